"""The fast tier: deskml's whole app (every middleware, router and runtime object) in process, with the
fake engine (`tests/fake_engine.py`) in place of llama.cpp, so no model loads and every reply is known.

`fake_app(**settings_overrides)` starts an app on its own data dir and returns its TestClient (pass
`loader=FakeLoader(...)` to keep a handle on the engines it makes); `running(app)` serves an app to an
httpx client inside one event loop, for tests that need requests in flight together; `drop_after` plays
a client that hangs up mid-reply, which neither TestClient nor httpx's ASGI transport can.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.types import EngineRequest
from tests.conftest import MODEL, make_settings
from tests.fake_engine import FakeEngine, FakeLoader

__all__ = ["MODEL", "AppFactory", "Dropped", "Reply", "drop_after", "fake_application", "last_request", "ndjson",
           "running", "sse", "text_engine"]

AppFactory = Callable[..., TestClient]


class Reply(Protocol):
    """An HTTP reply as TestClient (on its own copy of httpx) and httpx both give it."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self, **kwargs: Any) -> Any: ...


def fake_application(data_dir: Path, loader: FakeLoader | None = None, **overrides: object) -> FastAPI:
    """The app on the fake engine; the response cache is off unless a test turns it on, so each request
    reaches the engine and `last_request(loader)` shows what it got."""
    settings = make_settings(data_dir, **{"cache": False, **overrides})
    return create_app(settings, engine_loader=loader or FakeLoader())


@pytest.fixture
def fake_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Starts apps (lifespan entered) on the fake engine; they stop when the test ends."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:
        def start(*, loader: FakeLoader | None = None, **overrides: object) -> TestClient:
            app = fake_application(tmp_path / f"app{next(numbers)}", loader, **overrides)
            return stack.enter_context(TestClient(app))

        yield start


@pytest.fixture(scope="module")
def loader() -> FakeLoader:
    """The engines of the module's shared `client`."""
    return FakeLoader()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, loader: FakeLoader) -> Iterator[TestClient]:
    """One app per module on default settings (two slots, no cache), for tests that change no state."""
    with TestClient(fake_application(tmp_path_factory.mktemp("fast"), loader)) as test_client:
        yield test_client


def text_engine(loader: FakeLoader) -> FakeEngine:
    """The latest generating engine (embeddings load their own, with `embedding` set)."""
    return next(e for e in reversed(loader.engines) if not e.config.embedding)


def last_request(loader: FakeLoader) -> EngineRequest:
    """What the engine was last asked to generate."""
    return text_engine(loader).requests[-1]


def ndjson(response: Reply) -> list[dict[str, Any]]:
    """An NDJSON reply's objects; every line must be one whole JSON object ending in a newline."""
    assert response.text.endswith("\n"), response.text[-200:]
    lines = response.text.split("\n")[:-1]
    assert all(lines), response.text
    return [json.loads(line) for line in lines]


def sse(response: Reply) -> list[dict[str, Any]]:
    """An OpenAI SSE stream's chunks: each event one `data: ` line and a blank line, ending in [DONE]."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-1] == "", response.text[-200:]
    payloads = []
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event, event
        payloads.append(event.removeprefix("data: "))
    assert payloads[-1] == "[DONE]" and "[DONE]" not in payloads[:-1]
    return [json.loads(p) for p in payloads[:-1]]


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan entered and an httpx client on it, in the caller's event loop (so a test can
    hold requests in flight with asyncio tasks and a FakeLoader gate). The transport collects each reply
    whole: for streaming, use TestClient or `drop_after`."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30) as http:
        yield http


@dataclass
class Dropped:
    """What a client saw before it hung up."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def drop_after(app: FastAPI, path: str, body: dict[str, Any], *, received: int | None = None,
                     leave: asyncio.Event | None = None) -> Dropped:
    """POST `body` to `path` as a raw ASGI client that disconnects once `received` body bytes came (a
    reader leaving mid-stream) or when `leave` is set (a caller giving up while queued); returns once
    the app has finished with the request, which must be soon after."""
    gone = leave or asyncio.Event()
    seen = Dropped()
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen.status = message["status"]
            seen.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body" and not gone.is_set():
            seen.body += message.get("body", b"")
            if received is not None and len(seen.body) >= received:
                gone.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return seen
