"""On-disk model store: content-addressed blobs plus one JSON manifest per model name.

Layout under `<data_dir>/models`:
  blobs/sha256-<hex>               model files, stored once whatever number of names use them
  manifests/<path>/<tag>.json      a `Manifest` per model name
A blob is written to a temp file in `blobs/`, hashed while written, then renamed into place, so
a crash never leaves a half-written blob under a real digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from deskml.core.errors import BadRequest, NotFound
from deskml.runtime import names

_CHUNK = 1024 * 1024


class ModelFile(BaseModel):
    """One file of a model: a blob (`digest`) or, for package-bundled models, an external path."""

    role: Literal["model", "projector", "adapter", "data"] = "model"
    name: str = ""
    digest: str | None = None  # "sha256:<hex>"
    path: str | None = None
    size: int = 0


class Manifest(BaseModel):
    schema_version: int = 1
    name: str
    kind: Literal["llm", "embedding"] = "llm"
    files: list[ModelFile] = Field(default_factory=list)
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    license: list[str] = Field(default_factory=list)
    parent: str | None = None
    source: str | None = None
    builtin: bool = False
    modified_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def model_file(self) -> ModelFile:
        for item in self.files:
            if item.role == "model":
                return item
        raise BadRequest(f"model '{self.name}' has no weights file")


def digest_of_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            sha.update(block)
    return "sha256:" + sha.hexdigest()


def check_digest(digest: str) -> str:
    algo, _, hexpart = digest.replace("-", ":", 1).partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise BadRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return f"sha256:{hexpart}"


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)

    # blobs -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    @contextlib.contextmanager
    def _temp(self) -> Iterator[tuple[Any, Path]]:
        fd, name = tempfile.mkstemp(dir=self.blobs, prefix=".partial-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle, path
        finally:
            path.unlink(missing_ok=True)

    def add_file(self, source: Path) -> ModelFile:
        """Store a local file as a blob (hard link when on the same disk, else a copy)."""
        digest = digest_of_file(source)
        target = self.blob_path(digest)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                with self._temp() as (handle, tmp):
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, handle, _CHUNK)
                    handle.flush()
                    os.replace(tmp, target)
        return ModelFile(digest=digest, size=target.stat().st_size, name=source.name)

    async def add_stream(self, expected: str, chunks: AsyncIterator[bytes]) -> ModelFile:
        """Store an uploaded body; refuse it unless its sha256 equals `expected`."""
        expected = check_digest(expected)
        sha = hashlib.sha256()
        with self._temp() as (handle, tmp):
            async for chunk in chunks:
                sha.update(chunk)
                handle.write(chunk)
            handle.flush()
            actual = "sha256:" + sha.hexdigest()
            if actual != expected:
                raise BadRequest(f"digest mismatch: body is {actual}, expected {expected}")
            target = self.blob_path(expected)
            os.replace(tmp, target)
        return ModelFile(digest=expected, size=target.stat().st_size)

    def referenced_digests(self) -> set[str]:
        used: set[str] = set()
        for manifest in self.manifest_list():
            used.update(f.digest for f in manifest.files if f.digest)
        return used

    def garbage_collect(self) -> int:
        """Delete blobs no manifest refers to; returns bytes freed."""
        used = {d.replace(":", "-") for d in self.referenced_digests()}
        freed = 0
        for blob in self.blobs.glob("sha256-*"):
            if blob.name not in used:
                freed += blob.stat().st_size
                blob.unlink(missing_ok=True)
        return freed

    # manifests ---------------------------------------------------------------------------
    def _manifest_path(self, name: str) -> Path:
        path, tag = names.split(name)
        # a registry host may carry a port ("host:5000/..."); keep ':' out of file names
        return self.manifests.joinpath(*(p.replace(":", "_") for p in path.split("/"))) / f"{tag}.json"

    def manifest_list(self) -> list[Manifest]:
        found: list[Manifest] = []
        for file in sorted(self.manifests.rglob("*.json")):
            try:
                found.append(Manifest.model_validate_json(file.read_text("utf-8")))
            except (OSError, ValueError):
                continue  # a damaged manifest must not hide the others
        return found

    def read(self, name: str) -> Manifest | None:
        file = self._manifest_path(name)
        if not file.is_file():
            return None
        return Manifest.model_validate_json(file.read_text("utf-8"))

    def write(self, manifest: Manifest) -> None:
        file = self._manifest_path(manifest.name)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, indent=1), "utf-8")
        os.replace(tmp, file)

    def remove(self, name: str) -> None:
        file = self._manifest_path(name)
        if not file.is_file():
            raise NotFound(f"model '{name}' not found")
        file.unlink()
        with contextlib.suppress(OSError):
            file.parent.rmdir()
