"""On-disk model store: content-addressed blobs plus one JSON manifest per model name.

Layout under `<data_dir>/models`:
  blobs/sha256-<hex>               model files, stored once whatever number of names use them
  manifests/<path>/<tag>.json      a `Manifest` per model name
A blob is written to a temp file in `blobs/`, hashed while written, then renamed into place, so
a crash never leaves a half-written blob under a real digest; the temp files a killed process left
are deleted at the next start (`clean_partials`), while resumable downloads are kept.
A blob no manifest uses yet (uploaded for a `/api/create` still to come) is kept for a grace period
before the clean-up after a delete or a failed pull may remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from deskml.core.digest import CHUNK, HashingWriter, digest_of_file
from deskml.core.errors import BadRequest, InsufficientStorage, NotFound
from deskml.runtime import names
from deskml.runtime.diskspace import ensure_room, free_bytes, full_disk_is_507, size_text
from deskml.settings import Settings

_TEMP_PREFIX = ".partial-tmp-"  # an upload or copy in progress: worthless once its process is gone
# A download kept for resuming: `.partial-<digest or url hash>`, or one piece of a joined file.
_RESUMABLE = re.compile(r"^\.partial-(sha256|url)-[0-9a-f]{64}(-part\d+)?$")
_RECHECK_EVERY = 64 * CHUNK  # bytes written between free-space checks of an upload of unknown size


# What a model is, so the right engine serves it. The names match `ServiceKind` in
# runtime/service_models/manager.py (the non-LLM engines); "llm" is served by the llama.cpp engine.
ModelKind = Literal["llm", "embedding", "rerank", "classify", "ocr", "detect", "asr", "tts", "image", "style"]


class ModelFile(BaseModel):
    """One file of a model: a blob (`digest`) or, for package-bundled models, an external path.

    `name` is the file's path inside the model's folder ("config.json", "1_Pooling/config.json"):
    engines that need a folder (sentence-transformers, CTranslate2, Piper) get one from
    `ModelStore.model_dir`, which lays the blobs out under these names. A "draft" file (the small
    model that drafts tokens for speculative decoding, a GGUF LLM only) is the draft model's own
    weights file, and its `name` is that model's name: the blob stays referenced, and so kept, even
    after the draft model itself is deleted.
    """

    role: Literal["model", "projector", "adapter", "data", "draft"] = "model"
    name: str = ""
    digest: str | None = None  # "sha256:<hex>"
    path: str | None = None
    size: int = 0


class Manifest(BaseModel):
    schema_version: int = 1
    name: str
    kind: ModelKind = "llm"
    # On-disk format, for engines that read more than one: "gguf", "sentence-transformers",
    # "ctranslate2", "piper", "onnx", "safetensors"... None means GGUF (older manifests).
    format: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    capabilities: list[str] = Field(default_factory=list)
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

    def draft_file(self) -> ModelFile | None:
        return next((item for item in self.files if item.role == "draft"), None)


class ModelUsage(BaseModel):
    name: str
    kind: str
    size: int  # bytes of the blobs this model uses
    shared: int  # of which bytes other models use too (stored once)
    package: str | None = None  # the pip distribution whose files these are (a bundled model), else the store's


class StoreUsage(BaseModel):
    root: str
    models: list[ModelUsage]
    blobs: int
    blob_bytes: int  # what the blobs really take on disk, each counted once
    unreferenced_bytes: int  # blobs no manifest uses (`deskml rm` / gc frees them)
    partial_bytes: int  # unfinished downloads kept for resuming
    free_bytes: int
    package_bytes: int = 0  # bundled models' files inside installed packages, outside the store


def safe_relative(name: str) -> Path:
    """A model file name as a relative path that cannot leave the model folder."""
    path = Path(name)
    if not name or path.is_absolute() or any(part in {"", ".", ".."} for part in name.replace("\\", "/").split("/")):
        raise BadRequest(f"unsafe file name in model manifest: {name!r}")
    return path


def check_digest(digest: str) -> str:
    algo, _, hexpart = digest.replace("-", ":", 1).partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise BadRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return f"sha256:{hexpart}"


class ModelStore:
    def __init__(self, root: Path, *, reserve_bytes: int = 0, blob_grace_s: float = 3600.0) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.reserve_bytes = reserve_bytes  # what a write into the store must leave free
        self.blob_grace_s = blob_grace_s  # how long an unused blob is kept (by mtime)
        from deskml.services.fileperms import private_dir

        private_dir(root)  # a CLI command run before the first `serve` creates the data dir here
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_settings(cls, settings: Settings) -> ModelStore:
        return cls(settings.models_dir, reserve_bytes=settings.disk_reserve_mb * (1 << 20),
                   blob_grace_s=settings.blob_grace_minutes * 60)

    # blobs -------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / check_digest(digest).replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def keep_blob(self, digest: str) -> None:
        """Restart the grace period of a blob no model uses yet (a client found it there, so will use it).

        A blob a model already uses is left alone: it may be a hard link to the user's own file.
        """
        path = self.blob_path(digest)
        if check_digest(digest) not in self.referenced_digests():
            with contextlib.suppress(OSError):
                os.utime(path)

    @contextlib.contextmanager
    def _temp(self) -> Iterator[tuple[Any, Path]]:
        fd, name = tempfile.mkstemp(dir=self.blobs, prefix=_TEMP_PREFIX)
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
                size = source.stat().st_size
                what = f"copying {source.name} into the model store"
                ensure_room(self.blobs, size, what, self.reserve_bytes)
                with full_disk_is_507(self.blobs, what, size), self._temp() as (handle, tmp):
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, handle, CHUNK)
                    handle.flush()
                    os.replace(tmp, target)
        return ModelFile(digest=digest, size=target.stat().st_size, name=source.name)

    async def add_stream(self, expected: str, chunks: AsyncIterator[bytes], size: int | None = None) -> ModelFile:
        """Store an uploaded body; refuse it unless its sha256 equals `expected`.

        `size` (the declared Content-Length) is checked against free space first; a body of unknown
        size is stopped once it would eat into the reserve, and a full disk is a 507 either way.
        """
        expected = check_digest(expected)
        what = f"the blob {expected}"
        ensure_room(self.blobs, size, what, self.reserve_bytes)
        checked = 0
        with full_disk_is_507(self.blobs, what, size), self._temp() as (handle, tmp):
            out = HashingWriter(handle)
            async for chunk in chunks:
                out.write(chunk)
                if self.reserve_bytes and out.written - checked >= _RECHECK_EVERY:
                    checked = out.written
                    if free_bytes(self.blobs) < self.reserve_bytes:
                        raise InsufficientStorage(
                            f"not enough disk space for {what}: stopped after {size_text(out.written)} because "
                            f"{size_text(self.reserve_bytes)} must stay free (DESKML_DISK_RESERVE_MB)"
                        )
            handle.flush()
            actual = out.digest()
            if actual != expected:
                raise BadRequest(f"digest mismatch: body is {actual}, expected {expected}")
            target = self.blob_path(expected)
            os.replace(tmp, target)
        return ModelFile(digest=expected, size=target.stat().st_size)

    def partial_path(self, key: str) -> Path:
        """Where an unfinished download lives, so a later pull resumes it (key: a digest or URL hash)."""
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in key.replace(":", "-"))
        return self.blobs / f".partial-{safe}"

    def partials(self) -> list[Path]:
        return sorted(self.blobs.glob(".partial-*"))

    def clean_partials(self) -> int:
        """Delete the temp files of uploads and copies a killed process left; returns bytes freed.

        Call it at start-up only, before anything writes. Downloads kept for resuming stay.
        """
        freed = 0
        for path in self.partials():
            if _RESUMABLE.match(path.name):
                continue
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                freed += size
        return freed

    def adopt(self, tmp: Path, digest: str) -> Path:
        """Move a verified temp file into place under its digest (atomic on one filesystem)."""
        target = self.blob_path(digest)
        if target.exists():
            tmp.unlink(missing_ok=True)  # another pull stored the same blob meanwhile
        else:
            os.replace(tmp, target)
        return target

    def model_dir(self, manifest: Manifest) -> Path:
        """A folder holding the model's files under their names (hard links to the blobs).

        For engines that load a directory (sentence-transformers, faster-whisper, Piper). The folder
        is keyed by the files' digests, so a changed model gets a new folder and an old one is reused.
        """
        key = hashlib.sha256(
            "\n".join(f"{f.name}={f.digest or f.path}" for f in manifest.files).encode()
        ).hexdigest()[:16]
        folder = self.root / "trees" / key
        if (folder / ".complete").is_file():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for item in manifest.files:
            relative = safe_relative(item.name)
            source = Path(item.path) if item.path else self.blob_path(item.digest or "")
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                continue
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        (folder / ".complete").write_text(manifest.name, "utf-8")
        return folder

    def usage(self) -> StoreUsage:
        manifests = self.manifest_list()
        blob_sizes = {p.name.replace("-", ":", 1): p.stat().st_size for p in self.blobs.glob("sha256-*")}
        users: dict[str, int] = {}
        for manifest in manifests:
            for digest in {f.digest for f in manifest.files if f.digest}:
                users[digest] = users.get(digest, 0) + 1
        models = []
        for manifest in manifests:
            digests = {f.digest for f in manifest.files if f.digest}
            size = sum(blob_sizes.get(d, 0) for d in digests)
            shared = sum(blob_sizes.get(d, 0) for d in digests if users.get(d, 0) > 1)
            models.append(ModelUsage(name=manifest.name, kind=manifest.kind, size=size, shared=shared))
        unreferenced = sum(size for digest, size in blob_sizes.items() if digest not in users)
        partial = sum(p.stat().st_size for p in self.partials())
        return StoreUsage(
            root=str(self.root), models=models, blobs=len(blob_sizes), blob_bytes=sum(blob_sizes.values()),
            unreferenced_bytes=unreferenced, partial_bytes=partial, free_bytes=shutil.disk_usage(self.blobs).free,
        )

    def referenced_digests(self) -> set[str]:
        used: set[str] = set()
        for manifest in self.manifest_list():
            used.update(f.digest for f in manifest.files if f.digest)
        return used

    def garbage_collect(self, released: set[str] | frozenset[str] = frozenset()) -> int:
        """Delete blobs no manifest refers to; returns bytes freed.

        `released`: digests of the model just deleted (or of a pull that failed), which go at once
        when nothing else uses them. Any other unused blob written (or asked about, see `keep_blob`)
        within the grace period is kept: Ollama's clients upload the blobs first and `/api/create` the
        model after, and a delete or failed pull in between must not take the upload away.
        """
        used = {d.replace(":", "-") for d in self.referenced_digests()}
        now_free = {d.replace(":", "-") for d in released}
        cutoff = time.time() - self.blob_grace_s
        freed = 0
        for blob in self.blobs.glob("sha256-*"):
            if blob.name in used:
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = blob.stat()
                if blob.name not in now_free and stat.st_mtime > cutoff:
                    continue
                blob.unlink()
                freed += stat.st_size
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
        tmp = file.with_suffix(".tmp")
        with full_disk_is_507(self.manifests, f"the manifest of {manifest.name}", remove=tmp):
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, indent=1), "utf-8")
            os.replace(tmp, file)

    def remove(self, name: str) -> None:
        file = self._manifest_path(name)
        if not file.is_file():
            raise NotFound(f"model '{name}' not found")
        file.unlink()
        with contextlib.suppress(OSError):
            file.parent.rmdir()
