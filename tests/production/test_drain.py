"""Shutdown drain in process: after the grace period a running stream ends with a final error line
in its own framing, a reply not yet begun becomes a 503, and new requests are refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskml.api.middleware.observe import _final_error_chunk
from deskml.app import create_app
from tests.conftest import MODEL, make_settings, services_of


class _FirstBody:
    """Test probe: notes when a streamed reply has sent its first chunk (the transport buffers it)."""

    def __init__(self, app: ASGIApp, streaming: asyncio.Event) -> None:
        self.app = app
        self.streaming = streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def probe(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and message.get("body"):
                self.streaming.set()

        await self.app(scope, receive, probe)


@pytest.mark.slow  # the real model
def test_drain_ends_running_streams_with_an_error_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth="off", preload=True, cache=False)
    app = create_app(settings)
    streaming = asyncio.Event()
    app.add_middleware(_FirstBody, streaming=streaming)

    async def scenario() -> tuple[list[dict], httpx.Response, httpx.Response, list]:
        sinks: list = []
        async with app.router.lifespan_context(app):
            services_of(app).record_sinks.append(sinks.append)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
                endless = {"model": MODEL, "prompt": "Tell a long story.", "options": {"num_predict": 100000}}
                stream = asyncio.create_task(client.post("/api/generate", json=endless))
                collected = asyncio.create_task(client.post("/api/generate", json={**endless, "stream": False}))
                await asyncio.wait_for(streaming.wait(), timeout=60)  # the stream has begun
                services_of(app).drain.begin(0.2)
                streamed, whole = await asyncio.wait_for(asyncio.gather(stream, collected), timeout=30)
                refused = await client.get("/api/tags")
                lines = [json.loads(line) for line in streamed.text.splitlines()]
                assert whole.status_code == 503, whole.text
                return lines, whole, refused, sinks

    lines, whole, refused, sinks = asyncio.run(scenario())
    assert len(lines) >= 2 and all("response" in line for line in lines[:-1])
    assert "shutting down" in lines[-1]["error"]
    assert "shutting down" in whole.json()["error"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    ended = [r for r in sinks if r.path == "/api/generate"]
    assert len(ended) == 2 and {r.error for r in ended} == {"ended by shutdown"}
    assert {r.status for r in ended} == {200, 503}
    assert all(r.completion_tokens == 0 or r.model == "smollm2:135m" for r in ended)


def test_final_error_chunk_framing() -> None:
    sse = _final_error_chunk(b"text/event-stream; charset=utf-8", "openai")
    assert sse is not None and sse.startswith(b"data: ") and sse.endswith(b"\n\n")
    event = json.loads(sse[len(b"data: "):])
    assert event["error"]["type"] == "server_error" and event["error"]["code"] == "server_shutting_down"
    ndjson = _final_error_chunk(b"application/x-ndjson", "ollama")
    assert ndjson is not None and json.loads(ndjson) == {"error": json.loads(ndjson)["error"]}
    assert ndjson.endswith(b"\n")
    assert _final_error_chunk(b"audio/wav", "backend") is None  # no framing: the transfer is cut instead
