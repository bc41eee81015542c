"""Fixtures for the web UI tests: Debian's Chromium driven by Playwright (no downloaded browser),
a `deskml serve` subprocess whose pulls go to the fake hub and whose image models include a tiny
diffusion pipeline, and a folder for the screenshots every test saves (test-artifacts/ui)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.hub.conftest import FILE, REPO, build_wheel, catalog_entry
from tests.hub.fakehub import FakeHub, HubServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
DESKTOP = {"width": 1280, "height": 800}


def _need_browser() -> None:
    reason = ""
    if not CHROMIUM.exists():
        reason = "Debian's chromium is not installed (apt-get install chromium chromium-driver; `make dev` does it)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Debian's Chromium, never a browser that `playwright install` would download.
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class PageErrors:
    """Uncaught errors and console errors of a page: a UI test fails on any it did not expect."""

    def __init__(self, page: Any) -> None:
        self.items: list[str] = []
        page.on("pageerror", lambda exc: self.items.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: self.items.append(f"console: {msg.text}") if msg.type == "error" else None)

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.items if not any(a in e for a in allowed)]


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """`page, errors = new_page(**context_options)`: a fresh browser context (own sessionStorage)."""
    contexts: list[Any] = []

    def make(**options: Any) -> tuple[Any, PageErrors]:
        context = browser.new_context(**{"viewport": DESKTOP, **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page, PageErrors(page)

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# the server ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ui_hub(smollm2_gguf: Path) -> Iterator[FakeHub]:
    data = smollm2_gguf.read_bytes()
    hub = FakeHub()
    hub.add(REPO, FILE, data)
    filename, wheel = build_wheel("tiny-weights", "1.0.0", {"tiny_weights/tiny.gguf": data})
    hub.wheels[filename] = wheel
    server = HubServer(hub)
    try:
        yield hub
    finally:
        server.close()


@pytest.fixture(scope="module")
def ui_catalog(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    import hashlib

    data = smollm2_gguf.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    models = [catalog_entry("tiny-chat:latest", f"hf://{REPO}/{FILE}", sha, len(data), aliases=["tiny"])]
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps({"schema_version": 1, "models": models}), "utf-8")
    return path


@pytest.fixture(scope="module")
def image_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.media.conftest import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("image-models")
    build_tiny_pipeline(folder / "tiny-sd")
    return folder


def start_server(data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> ServerProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    full = {"DESKML_NUM_PARALLEL": "2", **(env or {})}
    if port is not None:
        full["DESKML_PORT"] = str(port)
    proc = ServerProcess(data_dir, env=full)
    if port is not None:  # the same address again (the banner test restarts a server)
        proc.port, proc.url = port, f"http://127.0.0.1:{port}"
    proc.wait_ready(timeout=60)
    return proc


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory, ui_hub: FakeHub, ui_catalog: Path,
              image_models: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("ui-server"), env={
        "DESKML_HF_ENDPOINT": ui_hub.url, "DESKML_CATALOG_FILE": str(ui_catalog), "DESKML_DISK_RESERVE_MB": "0",
        "DESKML_PYPI_INDEX_URL": ui_hub.url + "/simple", "DESKML_IMAGE_MODELS_DIR": str(image_models),
    })
    try:
        yield proc
    finally:
        proc.stop()


def wait_until(check: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_js(page: Any, expression: str, timeout: float = 60.0) -> Any:
    """Poll a JavaScript expression until it is truthy. (Playwright's wait_for_function compiles its
    predicate with eval, which the UI's Content-Security-Policy rightly forbids.)"""
    return wait_until(lambda: page.evaluate(expression), timeout=timeout, interval=0.1)


def running_requests(url: str, headers: dict[str, str] | None = None) -> int:
    models = httpx.get(url + "/api/ps", headers=headers, timeout=10).json()["models"]
    return sum(int(m.get("running") or 0) for m in models)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None
