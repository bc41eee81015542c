"""deskml.core.digest: file hashes, resumed hashes and hashing copies agree with hashlib."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from deskml.core.digest import CHUNK, HashingWriter, digest_of_file, hash_file, sha256_file


def test_file_hashes_agree_with_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK // 256 * 2 + 3)  # more than two chunks, not a multiple of one
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert digest_of_file(path) == "sha256:" + hashlib.sha256(data).hexdigest()
    for upto in (0, 1, CHUNK, CHUNK + 7, len(data), len(data) + 10):
        assert hash_file(path, upto).hexdigest() == hashlib.sha256(data[:upto]).hexdigest()


def test_a_hashing_writer_continues_a_resumed_file(tmp_path: Path) -> None:
    data = b"0123456789" * 1000
    path = tmp_path / "partial"
    path.write_bytes(data[:4321])
    with open(path, "ab") as out:
        writer = HashingWriter(out, hash_file(path, 4321), 4321)
        writer.copy(io.BytesIO(data[4321:5000]))
        writer.write(data[5000:])
    assert writer.written == len(data) == path.stat().st_size
    assert writer.digest() == "sha256:" + hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data


def test_copy_file_joins_parts(tmp_path: Path) -> None:
    parts = []
    for index, content in enumerate([b"a" * (CHUNK + 1), b"", b"tail"]):
        part = tmp_path / f"part{index}"
        part.write_bytes(content)
        parts.append(part)
    with open(tmp_path / "joined", "wb") as out:
        writer = HashingWriter(out)
        for part in parts:
            writer.copy_file(part)
    joined = (tmp_path / "joined").read_bytes()
    assert joined == b"a" * (CHUNK + 1) + b"tail"
    assert writer.hexdigest() == hashlib.sha256(joined).hexdigest() == sha256_file(tmp_path / "joined")
