"""Model registry: every model name the server knows, from the store and from bundled packages."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deskml.core.digest import digest_of_file
from deskml.core.errors import BadRequest, ModelNotFound
from deskml.runtime import names
from deskml.runtime.gguf import GGUFInfo, read_gguf
from deskml.runtime.model_store import Manifest, ModelFile, ModelStore, ModelUsage, StoreUsage
from deskml.runtime.packages import PackageModel, builtin_models


@dataclass
class ModelEntry:
    manifest: Manifest
    path: Path
    digest: str
    size: int
    # The draft model for speculative decoding (a Modelfile's DRAFT): the draft's canonical name when the
    # model was created (it may since be deleted: its blob stays) and its GGUF. `draft_name` set with
    # `draft_path` None means the draft's file is gone (a bundled model's package was uninstalled).
    draft_path: Path | None = None
    draft_name: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def modified_at(self) -> datetime:
        return self.manifest.modified_at


class Registry:
    def __init__(self, store: ModelStore, packages: list[PackageModel] | None = None) -> None:
        self.store = store
        self.packages = builtin_models() if packages is None else packages
        self._lock = threading.Lock()
        self._gguf_cache: dict[tuple[str, float], GGUFInfo] = {}
        self._digest_file = store.root / "digests.json"

    # lookup ------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        wanted = names.normalize(name)
        if self.store.read(wanted) is not None:
            return wanted
        for package in self.packages:
            if wanted == package.name or wanted in {names.normalize(a) for a in package.aliases}:
                return package.name
        return wanted

    def get(self, name: str) -> ModelEntry:
        canonical = self.canonical(name)
        manifest = self.store.read(canonical)
        if manifest is None:
            manifest = self._package_manifest(canonical)
        if manifest is None:
            raise ModelNotFound(name)
        return self._entry(manifest)

    def find(self, name: str) -> ModelEntry | None:
        try:
            return self.get(name)
        except (ModelNotFound, BadRequest):
            return None

    def list(self) -> list[ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        for package in self.packages:
            manifest = self._package_manifest(package.name)
            if manifest is not None:
                entries[manifest.name] = self._entry(manifest)
        for manifest in self.store.manifest_list():
            try:
                entries[manifest.name] = self._entry(manifest)
            except ModelNotFound:
                continue  # its blob is gone; `deskml rm` cleans it up
        return sorted(entries.values(), key=lambda e: e.modified_at, reverse=True)

    def gguf_info(self, entry: ModelEntry) -> GGUFInfo:
        if entry.manifest.format not in (None, "gguf"):
            return _described(entry.manifest)  # embeddings, Whisper, voices: what the manifest says
        key = (str(entry.path), entry.path.stat().st_mtime)
        with self._lock:
            info = self._gguf_cache.get(key)
        if info is None:
            info = read_gguf(entry.path)
            with self._lock:
                self._gguf_cache[key] = info
        return info

    def usage(self) -> StoreUsage:
        """The store's usage plus the bundled models, whose files live in packages (`pip uninstall` frees them)."""
        usage = self.store.usage()
        stored = {m.name for m in usage.models}
        referenced = self.store.referenced_digests()  # e.g. a stored model drafting with a bundled one
        for package in self.packages:
            if package.name in stored:
                continue
            manifest = self._package_manifest(package.name)
            if manifest is None:
                continue
            size = 0
            for item in manifest.files:
                if item.path:
                    size += Path(item.path).stat().st_size
                    usage.package_bytes += Path(item.path).stat().st_size
                elif item.digest and self.store.has_blob(item.digest):  # joined from package chunks into a blob
                    blob = self.store.blob_path(item.digest).stat().st_size
                    size += blob
                    if item.digest not in referenced:  # else the store did not count it as unreferenced
                        usage.unreferenced_bytes = max(0, usage.unreferenced_bytes - blob)  # the package uses it
            usage.models.append(ModelUsage(name=package.name, kind=manifest.kind, size=size, shared=0,
                                           package=package.package.split("==")[0]))
        return usage

    # changes -----------------------------------------------------------------------------
    def save(self, manifest: Manifest) -> ModelEntry:
        manifest.name = names.normalize(manifest.name)
        entry = self._entry(manifest)  # validates that its files exist before it is visible
        self.store.write(manifest)
        return entry

    def copy(self, source: str, destination: str) -> ModelEntry:
        entry = self.get(source)
        manifest = entry.manifest.model_copy(deep=True)
        manifest.name = names.normalize(destination)
        manifest.builtin = False
        manifest.modified_at = datetime.now(UTC)
        return self.save(manifest)

    def delete(self, name: str) -> None:
        canonical = self.canonical(name)
        manifest = self.store.read(canonical)
        if manifest is None:
            if self._package_manifest(canonical) is not None:
                package = next(p for p in self.packages if p.name == canonical)
                raise BadRequest(
                    f"'{canonical}' is bundled by the package {package.package.split('==')[0]}; "
                    f"uninstall that package to remove it"
                )
            raise ModelNotFound(name)
        released = {f.digest for f in manifest.files if f.digest}  # its blobs go at once, unless shared
        self.store.remove(canonical)
        self.store.garbage_collect(released)

    # internals ---------------------------------------------------------------------------
    def _package_manifest(self, canonical: str) -> Manifest | None:
        for package in self.packages:
            if package.name != canonical:
                continue
            files = package.locate(package, self.store)
            if not files:
                return None
            modified = datetime.fromtimestamp(
                Path(files[0].path).stat().st_mtime if files[0].path else 0, UTC
            )
            return Manifest(
                name=package.name,
                files=files,
                license=[package.license],
                parameters=dict(package.parameters),
                system=package.system,
                source=f"pypi:{package.package}",
                builtin=True,
                modified_at=modified,
            )
        return None

    def _entry(self, manifest: Manifest) -> ModelEntry:
        model_file = manifest.model_file()
        path = self._file_path(model_file, manifest.name)
        digest = model_file.digest or self._external_digest(path)
        entry = ModelEntry(manifest=manifest, path=path, digest=digest, size=path.stat().st_size)
        draft = manifest.draft_file()
        if draft is not None:
            entry.draft_name = draft.name or None
            if draft.path or draft.digest:
                draft_path = Path(draft.path) if draft.path else self.store.blob_path(draft.digest or "")
                entry.draft_path = draft_path if draft_path.is_file() else None
        return entry

    def _file_path(self, item: ModelFile, name: str) -> Path:
        path = Path(item.path) if item.path else self.store.blob_path(item.digest or "")
        if not path.is_file():
            raise ModelNotFound(name)
        return path

    def _external_digest(self, path: Path) -> str:
        """Digest of a file outside the blob store, cached by path, size and mtime."""
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        with self._lock:
            cache: dict[str, Any] = {}
            if self._digest_file.is_file():
                try:
                    cache = json.loads(self._digest_file.read_text("utf-8"))
                except ValueError:
                    cache = {}
            if key in cache:
                return str(cache[key])
            digest = digest_of_file(path)
            cache[key] = digest
            self._digest_file.write_text(json.dumps(cache), "utf-8")
            return digest


def _described(manifest: Manifest) -> GGUFInfo:
    """Model facts for a non-GGUF model, from its manifest (what pulls record), for show and tags."""
    size = (manifest.parameter_size or "").upper()
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}.get(size[-1:], 0)
    try:
        count = int(float(size[:-1]) * scale) if scale else 0
    except ValueError:
        count = 0
    metadata: dict[str, Any] = {"general.architecture": manifest.family or manifest.kind, "general.name": manifest.name}
    return GGUFInfo(metadata=metadata, parameter_count=count)
