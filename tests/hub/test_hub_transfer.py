"""Offline transfer: export models to a tar, import it into an empty data dir, refuse bad tars."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from deskml.core.errors import BadRequest
from deskml.runtime.hub.transfer import FORMAT, INDEX, export_models, import_models
from deskml.runtime.model_store import Manifest, ModelFile, ModelStore
from deskml.runtime.registry import Registry
from tests.hub.conftest import HubApp, ndjson


def _store_with_model(root: Path, data: bytes, name: str = "tiny:latest") -> Registry:
    store = ModelStore(root)
    source = root.parent / "src.gguf"
    source.write_bytes(data)
    stored = store.add_file(source)
    registry = Registry(store, packages=[])
    registry.save(Manifest(name=name, files=[stored], parameters={"temperature": 0.2}))
    return registry


@pytest.mark.slow  # the real model
def test_export_then_import_into_an_empty_data_dir_serves_the_model(hub_app: HubApp, tmp_path: Path) -> None:
    source_dir = tmp_path / "online"
    with hub_app(data_dir=source_dir) as client:
        assert ndjson(client.post("/api/pull", json={"model": "tiny-chat"}).text)[-1] == {"status": "success"}
        assert client.post("/api/create", json={"model": "tiny-pirate", "from": "tiny-chat",
                                                "system": "Talk like a pirate.", "stream": False}).status_code == 200
    tar = tmp_path / "models.tar"
    registry = Registry(ModelStore(source_dir / "models"), packages=[])
    assert export_models(registry, ["tiny-chat", "tiny-pirate"], tar) == ["tiny-chat:latest", "tiny-pirate:latest"]
    with tarfile.open(tar) as archive:
        blobs = [m.name for m in archive.getmembers() if m.name.startswith("blobs/")]
    assert len(blobs) == 1  # the shared weights travel once

    offline = tmp_path / "offline"
    imported = import_models(ModelStore(offline / "models"), tar)
    assert imported == ["tiny-chat:latest", "tiny-pirate:latest"]
    with hub_app(data_dir=offline, hf_endpoint="http://127.0.0.1:9") as client:  # no network at all
        names = {m["name"] for m in client.get("/api/tags").json()["models"]}
        assert {"tiny-chat:latest", "tiny-pirate:latest"} <= names
        show = client.post("/api/show", json={"model": "tiny-pirate"}).json()
        assert show["system"] == "Talk like a pirate."
        reply = client.post("/api/chat", json={
            "model": "tiny-chat", "stream": False, "options": {"num_predict": 8, "temperature": 0},
            "messages": [{"role": "user", "content": "Say hello."}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["message"]["content"].strip()
        assert reply.json()["eval_count"] > 0


def test_import_twice_is_harmless_and_export_of_an_unknown_model_fails(tmp_path: Path) -> None:
    registry = _store_with_model(tmp_path / "a", b"GGUF" + b"\0" * 100)
    tar = tmp_path / "m.tar"
    export_models(registry, ["tiny"], tar)
    store = ModelStore(tmp_path / "b")
    assert import_models(store, tar) == ["tiny:latest"]
    assert import_models(store, tar) == ["tiny:latest"]
    manifest = store.read("tiny")
    assert manifest is not None and manifest.parameters == {"temperature": 0.2}
    with pytest.raises(Exception, match="not found"):
        export_models(registry, ["nope"], tmp_path / "x.tar")


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            else:
                archive.addfile(info)
    return path


def _index(digest: str, size: int) -> bytes:
    manifest = Manifest(name="evil:latest", files=[ModelFile(digest=digest, size=size, name="m.gguf")])
    return json.dumps({"format": FORMAT, "manifests": [manifest.model_dump(mode="json")]}).encode()


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "wrong_hash", "missing_blob",
                                  "stray_file", "not_a_tar", "unsafe_file_name"])
def test_import_refuses_bad_tars(tmp_path: Path, case: str) -> None:
    data = b"GGUF" + b"\1" * 64
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob = f"blobs/{digest.replace(':', '-')}"
    index = _index(digest, len(data))
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [(tarfile.TarInfo(INDEX), index)]
    if case == "dotdot":
        members.append((tarfile.TarInfo("blobs/../../escaped"), data))
    elif case == "absolute":
        members.append((tarfile.TarInfo("/tmp/escaped"), data))
    elif case in ("symlink", "hardlink"):
        link = tarfile.TarInfo(blob)
        link.type = tarfile.SYMTYPE if case == "symlink" else tarfile.LNKTYPE
        link.linkname = "/etc/passwd"
        members.append((link, None))
    elif case == "wrong_hash":
        members.append((tarfile.TarInfo(blob), data + b"tampered"))
    elif case == "stray_file":
        members.append((tarfile.TarInfo("manifests/evil.json"), b"{}"))
    elif case == "unsafe_file_name":
        manifest = Manifest(name="evil:latest", files=[ModelFile(digest=digest, size=len(data), name="../../x")])
        members = [(tarfile.TarInfo(INDEX), json.dumps({"format": FORMAT,
                                                        "manifests": [manifest.model_dump(mode="json")]}).encode()),
                   (tarfile.TarInfo(blob), data)]
    path = tmp_path / "bad.tar"
    if case == "not_a_tar":
        path.write_bytes(b"this is not a tar file at all" * 100)
    else:
        _tar(path, members)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(BadRequest) as raised:
        import_models(store, path)
    expected = {"dotdot": "climbs out", "absolute": "absolute path", "symlink": "regular files",
                "hardlink": "regular files", "wrong_hash": "corrupt", "missing_blob": "does not contain",
                "stray_file": "unexpected", "not_a_tar": "not a readable tar", "unsafe_file_name": "unsafe"}[case]
    assert expected in raised.value.message
    assert store.manifest_list() == []
    assert not (tmp_path / "escaped").exists() and not list(store.blobs.glob(".partial-*"))


def test_a_package_bundled_model_exports_as_a_blob(tmp_path: Path, smollm2_gguf: Path) -> None:
    registry = Registry(ModelStore(tmp_path / "a"))  # with the bundled packages
    tar = tmp_path / "smol.tar"
    assert export_models(registry, ["smollm2"], tar) == ["smollm2:135m"]
    store = ModelStore(tmp_path / "b")
    assert import_models(store, tar) == ["smollm2:135m"]
    manifest = store.read("smollm2:135m")
    assert manifest is not None and not manifest.builtin and manifest.files[0].path is None
    digest = manifest.files[0].digest or ""
    assert store.blob_path(digest).stat().st_size == smollm2_gguf.stat().st_size
    assert digest == "sha256:" + hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
