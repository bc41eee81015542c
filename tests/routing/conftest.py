"""Fixtures for the router tests: fake upstreams, and apps whose routing file a test writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings
from tests.routing.fakes import FakeCloud, FakeOllama

CLOUD_KEY = "sk-test-good"


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloud]:
    monkeypatch.setenv("FAKE_CLOUD_KEY", CLOUD_KEY)
    server = FakeCloud("cloud", key=CLOUD_KEY, models=["gpt-4o-mini", "text-embedding-3-small"]).start()
    yield server
    server.stop()


@pytest.fixture
def lan_ollama() -> Iterator[FakeOllama]:
    server = FakeOllama("ollama", models=["llama3:8b"]).start()
    yield server
    server.stop()


def cloud_block(cloud: FakeCloud, name: str = "cloud", prefix: str = "cloud/") -> str:
    return (f'[[upstreams]]\nname = "{name}"\nkind = "openai"\nurl = "{cloud.url}/v1"\n'
            f'api_key_env = "FAKE_CLOUD_KEY"\nprefix = "{prefix}"\n')


@pytest.fixture
def routed_app(tmp_path: Path) -> Callable[..., Any]:
    """routed_app(toml, **settings) -> a context manager giving a TestClient on an app with that routing file."""

    @contextmanager
    def make(toml: str, **overrides: Any) -> Iterator[TestClient]:
        path = tmp_path / "upstreams.toml"
        path.write_text(toml, "utf-8")
        settings = make_settings(tmp_path / "data", upstreams_file=path, cache=False, **overrides)
        with TestClient(create_app(settings)) as client:
            yield client

    return make


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def backend_status(client: TestClient, name: str) -> dict[str, Any]:
    items = client.get("/api/admin/upstreams").json()["backends"]
    return next(item for item in items if item["name"] == name)
