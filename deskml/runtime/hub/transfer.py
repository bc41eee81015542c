"""Offline transfer: `deskml export NAME… -o models.tar` and `deskml import models.tar`.

The tar holds `deskml-export.json` (format version and the manifests), then `blobs/sha256-<hex>`.
Import trusts nothing in it: member names must be exactly those forms (no `../`, no absolute paths,
no links or devices), every blob is hashed while it is copied and must match its name, and the
manifests are written only after every blob they use is verified.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from deskml.core.digest import HashingWriter, digest_of_file
from deskml.core.errors import BadRequest
from deskml.runtime import names
from deskml.runtime.diskspace import full_disk_is_507
from deskml.runtime.model_store import Manifest, ModelFile, ModelStore, safe_relative
from deskml.runtime.registry import Registry

INDEX = "deskml-export.json"
FORMAT = "deskml-models/1"
_BLOB = re.compile(r"^blobs/sha256-([0-9a-f]{64})$")

Progress = Callable[[str, int], None]


def export_models(registry: Registry, models: list[str], target: Path, progress: Progress | None = None) -> list[str]:
    """Write the named models (with every blob they use, once) to a tar; returns the names written."""
    manifests: list[Manifest] = []
    blobs: dict[str, Path] = {}
    for model in models:
        entry = registry.get(model)
        manifest = entry.manifest.model_copy(deep=True)
        files = []
        for item in manifest.files:
            if item.digest:
                path = registry.store.blob_path(item.digest)
                digest = item.digest
            else:  # a package-bundled file: ship its bytes as a blob
                path = Path(item.path or "")
                digest = entry.digest if item.role == "model" else digest_of_file(path)
            blobs[digest] = path
            files.append(ModelFile(role=item.role, name=item.name or path.name, digest=digest,
                                   size=path.stat().st_size))
        manifest.files = files
        manifest.builtin = False
        manifests.append(manifest)
    index = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(),
             "manifests": [m.model_dump(mode="json") for m in manifests]}
    tmp = target.with_name(target.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(index, ensure_ascii=False, indent=1).encode("utf-8")
        info = tarfile.TarInfo(INDEX)
        info.size = len(data)
        info.mtime = int(datetime.now(UTC).timestamp())
        tar.addfile(info, _BytesReader(data))
        for digest, path in blobs.items():
            if progress:
                progress(digest, path.stat().st_size)
            tar.add(path, arcname="blobs/" + digest.replace(":", "-"), recursive=False)
    os.replace(tmp, target)
    return [m.name for m in manifests]


def import_models(store: ModelStore, source: Path, progress: Progress | None = None) -> list[str]:
    """Verify and add every model in an export tar; returns the model names imported."""
    manifests: list[Manifest] | None = None
    verified: set[str] = set()
    try:
        tar = tarfile.open(source, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as exc:
        raise BadRequest(f"{source} is not a readable tar file: {exc}") from None
    with tar:
        for member in _members(tar, source):
            _check_member(member)
            if member.name == INDEX:
                manifests = _read_index(tar, member)
                continue
            match = _BLOB.match(member.name)
            assert match is not None  # _check_member allows only the index and blobs
            digest = f"sha256:{match.group(1)}"
            if progress:
                progress(digest, member.size)
            if not store.has_blob(digest):
                _copy_blob(store, tar, member, digest)
            verified.add(digest)
    if manifests is None:
        raise BadRequest(f"{source} has no {INDEX}: not a deskml export")
    for manifest in manifests:
        for item in manifest.files:
            if not item.digest or (item.digest not in verified and not store.has_blob(item.digest)):
                raise BadRequest(f"{source}: model '{manifest.name}' needs {item.digest or item.name}, "
                                 f"which the tar does not contain")
    for manifest in manifests:
        manifest.modified_at = datetime.now(UTC)
        store.write(manifest)
    return [m.name for m in manifests]


def _members(tar: tarfile.TarFile, source: Path) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except tarfile.TarError as exc:
        raise BadRequest(f"{source} is damaged: {exc}") from None


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        raise BadRequest(f"refusing tar member with an absolute path: {name!r}")
    if ".." in re.split(r"[\\/]", name):
        raise BadRequest(f"refusing tar member that climbs out of the store: {name!r}")
    if not member.isfile():
        raise BadRequest(f"refusing tar member {name!r}: only regular files are allowed (no links or devices)")
    if name != INDEX and not _BLOB.match(name):
        raise BadRequest(f"unexpected tar member {name!r}: a deskml export holds {INDEX} and blobs/sha256-<hex>")


def _read_index(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[Manifest]:
    if member.size > 16 * 1024 * 1024:
        raise BadRequest(f"{INDEX} is too large")
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        index = json.loads(handle.read().decode("utf-8"))
        if index.get("format") != FORMAT:
            raise BadRequest(f"unknown export format {index.get('format')!r}; expected {FORMAT}")
        manifests = [Manifest.model_validate(m) for m in index["manifests"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"{INDEX} is not valid: {exc}") from None
    for manifest in manifests:
        manifest.name = names.normalize(manifest.name)
        manifest.builtin = False
        for item in manifest.files:
            if item.path is not None:
                raise BadRequest(f"model '{manifest.name}' refers to a path outside the store: {item.path!r}")
            if item.name:
                safe_relative(item.name)
    return manifests


def _copy_blob(store: ModelStore, tar: tarfile.TarFile, member: tarfile.TarInfo, digest: str) -> None:
    handle = tar.extractfile(member)
    assert handle is not None
    partial = store.partial_path("import-" + digest)
    try:
        with full_disk_is_507(store.blobs, f"importing {member.name}", member.size, remove=partial), \
                open(partial, "wb") as out:
            writer = HashingWriter(out)
            writer.copy(handle)
        actual = writer.digest()
        if actual != digest:
            raise BadRequest(f"blob {member.name} is corrupt: its content hashes to {actual}; nothing was imported")
        store.adopt(partial, digest)
    finally:
        partial.unlink(missing_ok=True)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk = self.data[self.pos:end]
        self.pos += len(chunk)
        return chunk
