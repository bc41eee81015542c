"""Issue 13: a full disk is a 507 with free/needed space (never a 500), partial files go at once and at
start-up, uploaded blobs survive the clean-up for a grace period, and blobs have their own size limit.

The full-disk tests run on a real 20 MB tmpfs when the test may mount one (root on Linux); the
`simulated_enospc` tests make the write itself fail with ENOSPC, so the same paths run everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.extras import install_command
from deskml.runtime import model_store as store_module
from deskml.runtime.model_store import ModelStore
from tests.conftest import MODEL, make_settings, services_of

MB = 1 << 20


def _blob(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _partials(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "models" / "blobs").glob(".partial-*"))


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 20 MB tmpfs as the data dir (skipped where mounting is not allowed)."""
    target = tmp_path / "data"
    target.mkdir()
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(target)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _fill(data_dir: Path, leave: int = 0) -> Path:
    """Fill the disk holding `data_dir` until about `leave` bytes are free."""
    filler = data_dir / "filler"
    with open(filler, "wb") as out:
        block = b"\0" * MB
        with contextlib.suppress(OSError):
            while os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize > leave + MB:
                out.write(block)
                out.flush()
            out.write(b"\0" * max(0, os.statvfs(data_dir).f_bavail * os.statvfs(data_dir).f_frsize - leave))
    return filler


def _assert_507(response: httpx.Response, *needles: str) -> str:
    assert response.status_code == 507, response.text
    message = response.json()["error"]
    assert "not enough disk space" in message and "free" in message, message
    for needle in needles:
        assert needle in message, message
    return message


# full disk on a real tmpfs -----------------------------------------------------------------------
def test_real_full_disk_create_upload_pull_are_507_and_leave_no_partial(small_disk: Path, smollm2_gguf: Path) -> None:
    with TestClient(create_app(make_settings(small_disk, disk_reserve_mb=0))) as client:
        # create from a path on another disk: it must be copied, and 98 MB cannot fit in 20 MB
        made = client.post("/api/create", json={"model": "big", "from": str(smollm2_gguf)})
        _assert_507(made, "needs 98.4 MB")
        # pull of a local path: refused before the copy starts
        pulled = client.post("/api/pull", json={"model": str(smollm2_gguf), "stream": False})
        _assert_507(pulled, "needs 98.4 MB")
        # a declared upload larger than the disk: refused before a byte is written
        data = os.urandom(30 * MB)
        declared = client.post(f"/api/blobs/{_blob(data)}", content=data)
        _assert_507(declared, "needs 31.5 MB")

        # a chunked upload (no Content-Length) runs into the full disk while writing
        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), MB):
                yield data[start:start + MB]

        chunked = client.post(f"/api/blobs/{_blob(data)}", content=chunks())
        message = _assert_507(chunked)
        assert "could not be written" in message
        assert _partials(small_disk) == []  # removed at once, the disk is free again
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        assert free > 15 * MB
        assert client.head(f"/api/blobs/{_blob(data)}").status_code == 404
        # the server keeps serving: a small upload still fits
        small = b"tiny blob"
        assert client.post(f"/api/blobs/{_blob(small)}", content=small).status_code == 201


def test_real_full_disk_pull_without_content_length_is_507(small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL whose server sends no Content-Length: the size is unknown until the disk fills."""

    async def body() -> AsyncIterator[bytes]:
        block = b"GGUF" + b"\0" * (MB - 4)
        for _ in range(40):
            yield block

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200)
        return httpx.Response(200, content=body())

    from deskml.runtime.hub import pulls

    monkeypatch.setattr(pulls, "_client", lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    url = "https://files.example/big.gguf"
    with TestClient(create_app(make_settings(small_disk, disk_reserve_mb=0))) as client:
        pulled = client.post("/api/pull", json={"model": url, "stream": False})
        _assert_507(pulled, "big.gguf")
        assert _partials(small_disk) == []
        streamed = client.post("/api/pull", json={"model": url})
        assert streamed.status_code == 200  # the stream had started: the error is its last line
        last = _ndjson(streamed.text)[-1]
        assert "not enough disk space" in last["error"] and "free" in last["error"], last
        assert _partials(small_disk) == []


def test_real_full_disk_database_write_is_507(small_disk: Path) -> None:
    with TestClient(create_app(make_settings(small_disk))) as client:
        assert client.post("/api/keys", json={"name": "first", "scopes": ["inference"]}).status_code == 201
        filler = _fill(small_disk)
        try:
            # SQLite says "database or disk is full"; a few keys in, the pages it had are used up
            responses = [client.post("/api/keys", json={"name": f"k{i}" + "x" * 190, "scopes": ["inference"]})
                         for i in range(60)]
            statuses = {r.status_code for r in responses}
            assert 500 not in statuses, [r.text for r in responses if r.status_code == 500][:1]
            assert 507 in statuses, statuses
            _assert_507(next(r for r in responses if r.status_code == 507), "database")
        finally:
            filler.unlink()
        assert client.post("/api/keys", json={"name": "after", "scopes": ["inference"]}).status_code == 201


# the same paths with ENOSPC simulated at the write ----------------------------------------------
class _FullHandle:
    """A file handle on a disk that is full after `room` bytes."""

    def __init__(self, handle: Any, room: int) -> None:
        self.handle = handle
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.handle.write(data))

    def flush(self) -> None:
        self.handle.flush()


@pytest.fixture
def simulated_enospc(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every store temp file is on a disk with 1 MB left; returns the temp paths it handed out."""
    original = ModelStore._temp
    seen: list[Path] = []

    @contextlib.contextmanager
    def full_temp(self: ModelStore) -> Iterator[tuple[Any, Path]]:
        with original(self) as (handle, path):
            seen.append(path)
            yield _FullHandle(handle, MB), path

    monkeypatch.setattr(ModelStore, "_temp", full_temp)
    return seen


def test_simulated_enospc_blob_upload_is_507_in_each_dialect_shape(tmp_path: Path,
                                                                   simulated_enospc: list[Path]) -> None:
    data = os.urandom(3 * MB)
    with TestClient(create_app(make_settings(tmp_path, disk_reserve_mb=0))) as client:
        response = client.post(f"/api/blobs/{_blob(data)}", content=data)
        message = _assert_507(response, "needs 3.1 MB")
        assert str(tmp_path) in message
        assert simulated_enospc and not any(p.exists() for p in simulated_enospc)
        assert _partials(tmp_path) == []
    from deskml.api.errors import error_response
    from deskml.core.errors import InsufficientStorage

    error = InsufficientStorage("not enough disk space for x")
    openai = json.loads(error_response("openai", error).body)
    assert openai["error"]["code"] == "insufficient_storage" and openai["error"]["type"] == "server_error"
    assert json.loads(error_response("backend", error).body) == {"success": False, "error": error.message}


def test_simulated_enospc_create_from_path_is_507(tmp_path: Path, smollm2_gguf: Path, simulated_enospc: list[Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(*_args: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_module.os, "link", no_link)  # so the file is copied, as across disks
    with TestClient(create_app(make_settings(tmp_path, disk_reserve_mb=0))) as client:
        made = client.post("/api/create", json={"model": "big", "from": str(smollm2_gguf)})
        _assert_507(made, "needs 98.4 MB", "copying")
        assert _partials(tmp_path) == []
        assert client.post("/api/show", json={"model": "big"}).status_code == 404


def test_reserve_refuses_an_upload_that_would_eat_into_it(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    reserve_mb = free // MB  # everything free is reserved: a 1 MB upload cannot fit
    with TestClient(create_app(make_settings(tmp_path, disk_reserve_mb=reserve_mb))) as client:
        data = os.urandom(MB)
        _assert_507(client.post(f"/api/blobs/{_blob(data)}", content=data), "DESKML_DISK_RESERVE_MB")


def test_unfinished_uploads_of_a_killed_process_are_deleted_at_start_up(tmp_path: Path) -> None:
    blobs = tmp_path / "models" / "blobs"
    blobs.mkdir(parents=True)
    resumable = f".partial-sha256-{'a' * 64}"
    (blobs / ".partial-tmp-k1ll3d").write_bytes(b"x" * 1000)  # an upload cut off by a kill
    (blobs / ".partial-8c_x1zq2").write_bytes(b"x" * 1000)  # what older versions named them
    (blobs / resumable).write_bytes(b"GGUF" + b"x" * 1000)  # a download kept for resuming
    with TestClient(create_app(make_settings(tmp_path))) as client:
        assert client.get("/api/version").status_code == 200
        assert _partials(tmp_path) == [resumable]


# grace period for unreferenced blobs -------------------------------------------------------------
def test_uploaded_blob_survives_an_unrelated_delete_and_an_old_one_does_not(tmp_path: Path) -> None:
    fresh, old = b"GGUF uploaded for a create still to come", b"forgotten upload"
    with TestClient(create_app(make_settings(tmp_path))) as client:
        for data in (fresh, old):
            assert client.post(f"/api/blobs/{_blob(data)}", content=data).status_code == 201
        store: ModelStore = services_of(client.app).registry.store
        two_hours_ago = time.time() - 2 * 3600
        os.utime(store.blob_path(_blob(old)), (two_hours_ago, two_hours_ago))
        assert client.post("/api/copy", json={"source": MODEL, "destination": "other"}).status_code == 200
        assert client.request("DELETE", "/api/delete", json={"model": "other"}).status_code == 200
        assert client.head(f"/api/blobs/{_blob(fresh)}").status_code == 200
        assert client.head(f"/api/blobs/{_blob(old)}").status_code == 404
        assert services_of(client.app).registry.store.usage().unreferenced_bytes == len(fresh)
        # once a model used it, deleting that model frees it at once: the grace is for waiting uploads
        made = client.post("/api/create", json={"model": "m", "files": {"m.gguf": _blob(fresh)}, "stream": False})
        assert made.status_code == 200, made.text
        assert client.request("DELETE", "/api/delete", json={"model": "m"}).status_code == 200
        assert client.head(f"/api/blobs/{_blob(fresh)}").status_code == 404


def test_head_of_a_waiting_blob_restarts_its_grace_and_a_failed_pull_keeps_it(tmp_path: Path) -> None:
    data = b"GGUF uploaded, HEAD-checked later by the client"
    store = ModelStore(tmp_path / "models", blob_grace_s=3600)
    settings = make_settings(tmp_path)
    path = store.blob_path(_blob(data))
    path.write_bytes(data)
    long_ago = time.time() - 5 * 3600
    os.utime(path, (long_ago, long_ago))
    with TestClient(create_app(settings)) as client:
        assert client.head(f"/api/blobs/{_blob(data)}").status_code == 200  # the client will not re-upload
        assert path.stat().st_mtime > time.time() - 60
        # a pull that fails its format check cleans up what it fetched, but not this blob
        services_of(client.app).registry.store.garbage_collect()
        assert client.head(f"/api/blobs/{_blob(data)}").status_code == 200
    assert ModelStore(tmp_path / "models", blob_grace_s=0).garbage_collect() == len(data)
    assert not path.exists()


# blobs have their own size limit -----------------------------------------------------------------
def test_blob_upload_has_its_own_limit_and_json_bodies_keep_theirs(tmp_path: Path, smollm2_gguf: Path) -> None:
    with open(smollm2_gguf, "rb") as handle:
        data = handle.read(3 * MB)  # a GGUF header and then some: /api/create accepts it
    with TestClient(create_app(make_settings(tmp_path, max_upload_mb=1))) as client:
        uploaded = client.post(f"/api/blobs/{_blob(data)}", content=data)
        assert uploaded.status_code == 201, uploaded.text
        assert client.head(f"/api/blobs/{_blob(data)}").status_code == 200
        made = client.post("/api/create", json={"model": "from-blob", "files": {"m.gguf": _blob(data)},
                                                  "stream": False})
        assert made.status_code == 200, made.text
        tags = {m["name"]: m for m in client.get("/api/tags").json()["models"]}
        assert tags["from-blob:latest"]["digest"] == _blob(data).split(":", 1)[1]
        assert tags["from-blob:latest"]["size"] == len(data)
        big_json = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (3 * MB)}]})
        chat = client.post("/api/chat", content=big_json, headers={"content-type": "application/json"})
        assert chat.status_code == 413
        assert "DESKML_MAX_UPLOAD_MB" in chat.json()["error"]
        wrong = client.post(f"/api/blobs/{_blob(b'other')}", content=data)
        assert wrong.status_code == 400 and "digest mismatch" in wrong.json()["error"]
    with TestClient(create_app(make_settings(tmp_path, max_upload_mb=1, max_blob_mb=2))) as client:
        too_big = client.post(f"/api/blobs/{_blob(data)}", content=data)
        assert too_big.status_code == 413 and "DESKML_MAX_BLOB_MB" in too_big.json()["error"]


# inputs whose cost grows with their size have a documented bound ----------------------------------
def test_speech_text_over_4096_characters_is_400_at_once_without_loading_a_voice(app_client: TestClient) -> None:
    text = "Hello there. " * 316  # 4,108 characters
    services = services_of(app_client.app).service_manager
    started = time.monotonic()
    seed = app_client.post("/api/audio/speak", json={"text": text[:4097]})
    openai = app_client.post("/v1/audio/speech", json={"input": text[:4097], "model": "tts-1", "voice": "alloy"})
    elapsed = time.monotonic() - started
    assert seed.status_code == 400 and seed.json()["success"] is False
    assert "4096" in seed.json()["error"] and "text" in seed.json()["error"]
    assert openai.status_code == 400 and "4096" in openai.json()["error"]["message"]
    assert elapsed < 2.0
    assert not [s for s in services.loaded() if s.spec.kind == "tts"]  # refused before any voice loaded
    empty = app_client.post("/v1/audio/speech", json={"input": "", "model": "tts-1"})
    assert empty.status_code == 400


def test_image_prompt_has_a_documented_bound(app_client: TestClient) -> None:
    prompt = "a cat " * 6000  # 36,000 characters, over the 32,000 cap
    seed = app_client.post("/api/images/generate", json={"prompt": prompt})
    assert seed.status_code == 400 and "32000" in seed.json()["error"]
    openai = app_client.post("/v1/images/generations", json={"prompt": "a cat", "negative_prompt": prompt})
    assert openai.status_code == 400 and "32000" in openai.json()["error"]["message"]


def test_image_zip_without_the_vision_extra_is_501_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label in ("cats", "dogs"):
            for i in range(2):
                archive.writestr(f"{label}/{i}.png", b"\x89PNG not decoded: Pillow is missing")
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "pets.zip").write_bytes(buffer.getvalue())
    with TestClient(create_app(make_settings(tmp_path / "data", datasets_dir=datasets))) as client:
        # As on an install without the [vision] extra: Pillow cannot be imported.
        monkeypatch.setitem(__import__("sys").modules, "PIL", None)
        trained = client.post("/api/train", json={"dataset": "pets.zip", "config": {"kind": "image"}})
        assert trained.status_code == 501, trained.text
        assert install_command("vision") in trained.json()["error"]  # `pip install -e '.[vision]'` in a checkout
        uploaded = client.post("/api/files", files={"file": ("pets.zip", buffer.getvalue())},
                               data={"purpose": "train"})
        assert uploaded.status_code == 501 and install_command("vision") in uploaded.json()["error"]

