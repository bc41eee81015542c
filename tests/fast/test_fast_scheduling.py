"""Scheduling over HTTP on the fake engine: num_parallel slots and a bounded queue (a full one is a 503
with Retry-After in each dialect), clients that leave free their slot or their place in the queue,
keep_alive loads and unloads (never while busy), and /api/ps shows it all. A FakeLoader gate holds
replies in the engine, so "running" and "queued" are states a test waits for, not timings it hopes for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.fake_engine import FakeLoader
from tests.fast.conftest import MODEL, AppFactory, drop_after, fake_application, ndjson, running, text_engine

LONG = " ".join(f"w{i}" for i in range(300))  # 300 tokens: 3 s at the 10 ms token_delay used below


def _generate(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, "stream": False}


async def _ps(http: httpx.AsyncClient) -> dict[str, Any] | None:
    models = (await http.get("/api/ps")).json()["models"]
    return next((m for m in models if m["name"] == MODEL), None)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the server never got there"
        await asyncio.sleep(0.01)


async def _counts(http: httpx.AsyncClient, running_: int, queued: int) -> bool:
    model = await _ps(http)
    return model is not None and (model["running"], model["queued"]) == (running_, queued)


def test_slots_run_at_once_a_bounded_queue_waits_and_a_full_one_is_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        loader = FakeLoader(gate=gate)
        async with running(fake_application(tmp_path, loader, num_parallel=2, max_queue=1)) as http:
            first = [asyncio.create_task(http.post("/api/generate", json=_generate(p))) for p in ("one", "two")]
            await _until(lambda: _counts(http, 2, 0))
            third = asyncio.create_task(http.post("/api/generate", json=_generate("three")))
            await _until(lambda: _counts(http, 2, 1))
            assert loader.engine.active == 2  # the queued request has not reached the engine

            busy = await http.post("/api/generate", json=_generate("four"))
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert busy.json() == {"error": "server busy"}
            openai = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": [
                {"role": "user", "content": "four"}], "stream": True})
            assert openai.status_code == 503 and openai.headers["retry-after"] == "1"  # a status, not a broken stream
            assert openai.json()["error"]["message"] == "server busy"
            seed = await http.post("/api/llm/generate", json={"prompt": "four"})
            assert seed.status_code == 503 and seed.json() == {"success": False, "error": "server busy"}

            gate.set()
            replies = await asyncio.gather(*first, third)
            assert [r.json()["response"] for r in replies] == ["one", "two", "three"]
            order = [r.prompt or r.messages[-1].content for r in loader.engine.requests]
            assert sorted(order[:2]) == ["one", "two"] and order[2] == "three"  # the queued one ran last
            assert await _counts(http, 0, 0)

    asyncio.run(scenario())


def test_a_reader_leaving_mid_stream_frees_the_slot(tmp_path: Path) -> None:
    async def scenario() -> None:
        loader = FakeLoader(token_delay=0.01)
        app = fake_application(tmp_path, loader, num_parallel=1, max_queue=0)  # one slot, no queue: a leak is a 503
        async with running(app) as http:
            for path, body in (("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": LONG}]}),
                               ("/v1/chat/completions", {"model": MODEL, "stream": True,
                                                         "messages": [{"role": "user", "content": LONG}]})):
                seen = await drop_after(app, path, body, received=1)
                assert seen.status == 200 and seen.body
                engine = text_engine(loader)
                assert engine.active == 0  # the engine's stream was closed as the client left
                assert await _counts(http, 0, 0)
                after = await http.post("/api/generate", json=_generate("still here"))
                assert after.status_code == 200 and after.json()["response"] == "still here"
            assert len(loader.engines) == 1  # the same model served everything

    asyncio.run(scenario())


def test_a_caller_leaving_the_queue_gives_up_its_place(tmp_path: Path) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        loader = FakeLoader(gate=gate)
        app = fake_application(tmp_path, loader, num_parallel=1, max_queue=1)
        async with running(app) as http:
            held = asyncio.create_task(http.post("/api/generate", json=_generate("held")))
            await _until(lambda: _counts(http, 1, 0))
            leave = asyncio.Event()
            waiting = asyncio.create_task(drop_after(app, "/api/chat", {"model": MODEL, "messages": [
                {"role": "user", "content": "never mind"}]}, leave=leave))
            await _until(lambda: _counts(http, 1, 1))
            leave.set()
            await waiting
            await _until(lambda: _counts(http, 1, 0))
            queued_again = asyncio.create_task(http.post("/api/generate", json=_generate("next")))  # not a 503
            await _until(lambda: _counts(http, 1, 1))
            gate.set()
            assert (await held).json()["response"] == "held" and (await queued_again).json()["response"] == "next"
            assert [r.prompt or r.messages[-1].content for r in loader.engine.requests] == ["held", "next"]

    asyncio.run(scenario())


def _expires_in(model: dict[str, Any]) -> float:
    return datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00")).timestamp() - time.time()


def test_keep_alive_loads_unloads_and_ps_shows_the_model(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client: TestClient = fake_app(loader=loader)
    assert client.get("/api/ps").json() == {"models": []}
    loaded = client.post("/api/generate", json={"model": "smollm2"}).json()  # no prompt: load only
    assert loaded["done_reason"] == "load" and loaded["response"] == "" and len(loader.engines) == 1
    [model] = client.get("/api/ps").json()["models"]
    assert model["name"] == model["model"] == MODEL and len(model["digest"]) == 64
    assert (model["slots"], model["running"], model["queued"], model["context_length"]) == (2, 0, 0, 2048)
    assert (model["processor"], model["device"], model["size_vram"]) == ("100% CPU", "cpu", 0)
    assert model["details"]["family"] == "llama" and 290 < _expires_in(model) <= 300  # the default, 300 s

    client.post("/api/generate", json={"model": MODEL, "keep_alive": "10m"})
    assert 590 < _expires_in(client.get("/api/ps").json()["models"][0]) <= 600
    client.post("/api/generate", json={"model": MODEL, "keep_alive": -1})
    assert client.get("/api/ps").json()["models"][0]["expires_at"].startswith("2318-")  # forever

    unloaded = client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload" and unloaded["message"] == {"role": "assistant", "content": ""}
    assert client.get("/api/ps").json() == {"models": []} and loader.engine.closed

    # a reply with keep_alive 0 is answered, then its model goes
    lines = ndjson(client.post("/api/chat", json={"model": MODEL, "keep_alive": 0,
                                                  "messages": [{"role": "user", "content": "bye now"}]}))
    assert "".join(line["message"]["content"] for line in lines) == "bye now" and len(loader.engines) == 2
    deadline = time.monotonic() + 3
    while client.get("/api/ps").json()["models"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.get("/api/ps").json() == {"models": []} and loader.engine.closed
    assert len(loader.engines) == 2  # one load per use, nothing loaded behind the caller's back


def test_an_expired_model_is_not_unloaded_while_it_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        loader = FakeLoader(gate=gate)
        async with running(fake_application(tmp_path, loader)) as http:
            held = asyncio.create_task(http.post("/api/generate", json={**_generate("slow"), "keep_alive": 0.05}))
            await _until(lambda: _counts(http, 1, 0))
            await asyncio.sleep(0.2)  # well past its keep_alive
            assert await _counts(http, 1, 0) and not loader.engine.closed
            gate.set()
            assert (await held).json()["response"] == "slow"
            await _until(lambda: _gone(http))
            assert loader.engine.closed

    asyncio.run(scenario())


async def _gone(http: httpx.AsyncClient) -> bool:
    return await _ps(http) is None
