"""SHA-256 of files, and of bytes as they are written: the model store's digests, downloads, imports
and the files joined from parts all check their bytes this way, reading each byte once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20  # bytes read at a time: large enough to stream at disk speed, small enough to stay cheap


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def hash_file(path: Path, upto: int | None = None) -> hashlib._Hash:
    """The running sha256 of `path` (of its first `upto` bytes), to read out or to feed more bytes to."""
    sha = hashlib.sha256()
    remaining = upto
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            block = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not block:
                break
            sha.update(block)
            if remaining is not None:
                remaining -= len(block)
    return sha


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file."""
    return hash_file(path).hexdigest()


def digest_of_file(path: Path) -> str:
    """A file's digest as the model store names blobs: `sha256:<hex>`."""
    return "sha256:" + sha256_file(path)


class HashingWriter:
    """A binary file being written that hashes and counts what goes into it, so a copy or a download
    is checked without reading it back. `sha` and `written` continue a resumed file."""

    def __init__(self, out: BinaryIO, sha: hashlib._Hash | None = None, written: int = 0) -> None:
        self.out = out
        self.sha = hashlib.sha256() if sha is None else sha
        self.written = written

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.sha.update(data)
        self.written += len(data)

    def copy(self, source: Readable) -> None:
        """Append everything `source` still has to give."""
        while block := source.read(CHUNK):
            self.write(block)

    def copy_file(self, path: Path) -> None:
        with open(path, "rb") as handle:
            self.copy(handle)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()

    def digest(self) -> str:
        """`sha256:<hex>`, the model store's form."""
        return "sha256:" + self.sha.hexdigest()
