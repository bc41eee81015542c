"""Concurrency and model lifecycle (issue 4): batching correctness, queue overflow, cancellation,
keep_alive / unload / LRU, load de-duplication and prefix reuse, on the real SmolLM2 model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.types import ChatMessage, ChatRequest, SamplingOptions, collect
from deskml.runtime.inference import InferenceService
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.model_store import ModelStore
from deskml.runtime.registry import Registry
from tests.conftest import MODEL, ServerProcess, make_settings

pytestmark = pytest.mark.slow  # every test here loads the real model

PROMPTS = ["Write a story about a dragon.", "Explain how rain forms.", "List five fruits.", "What is Python?"]


def _request(prompt: str, n: int = 48) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[ChatMessage(role="user", content=prompt)],
                       options=SamplingOptions(temperature=0, num_predict=n))


async def _reply(service: InferenceService, prompt: str) -> str:
    return collect([e async for e in service.chat(_request(prompt))]).text


@pytest.fixture
def runtime(tmp_path: Path):
    settings = make_settings(tmp_path, num_parallel=4, max_queue=2, keep_alive=60)
    registry = Registry(ModelStore(settings.models_dir))
    return settings, registry


def test_concurrent_replies_equal_sequential(runtime) -> None:
    """At temperature 0, four replies decoded together in one batch equal the same requests run alone."""
    settings, registry = runtime

    async def scenario() -> tuple[list[str], list[str], int]:
        manager = ModelManager(settings, registry)
        service = InferenceService(settings, registry, manager)
        manager.start()
        try:
            alone = [await _reply(service, p) for p in PROMPTS]
            together = await asyncio.gather(*(_reply(service, p) for p in PROMPTS))
            running = manager.loaded()[0].scheduler.running
            return alone, list(together), running
        finally:
            await manager.close()

    alone, together, running = asyncio.run(scenario())
    assert together == alone
    assert running == 0


def test_queue_overflow_is_503_with_retry_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, num_parallel=1, max_queue=1)

    async def scenario() -> list[int | str]:
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=transport, base_url="http://testserver", timeout=120) as client:
            # long enough that the first is still decoding when the third arrives; no response cache,
            # so the third cannot be answered from the first one's reply
            body = {"model": MODEL, "prompt": "Count from one to fifty.", "stream": False,
                    "options": {"num_predict": 300, "temperature": 0, "logit_bias": {"0": -100, "2": -100}}}
            headers = {"X-Deskml-Cache": "off"}
            tasks = [asyncio.create_task(client.post("/api/generate", json=body, headers=headers)) for _ in range(2)]
            # one runs, one waits: the queue of 1 is full (the first also loads the model, which a
            # loaded machine may take several seconds to do, so wait for that state, not for a second)
            deadline = time.monotonic() + 120
            while [(m["running"], m["queued"]) for m in (await client.get("/api/ps")).json()["models"]] != [(1, 1)]:
                assert time.monotonic() < deadline, (await client.get("/api/ps")).json()
                await asyncio.sleep(0.05)
            third = await client.post("/api/generate", json=body, headers=headers)
            results = await asyncio.gather(*tasks)
            assert third.headers.get("retry-after") == "1"
            return [r.status_code for r in results] + [third.status_code, third.json()["error"]]

    first, second, third, error = asyncio.run(scenario())
    assert (first, second) == (200, 200)
    assert third == 503 and error == "server busy"


def test_keep_alive_expiry_unload_and_forever(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, keep_alive=60)
    with TestClient(create_app(settings)) as client:
        client.post("/api/generate", json={"model": MODEL, "keep_alive": 1})
        assert [m["name"] for m in client.get("/api/ps").json()["models"]] == [MODEL]
        deadline = time.monotonic() + 5
        while client.get("/api/ps").json()["models"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/api/ps").json()["models"] == []  # unloaded about 1 s after its last use

        client.post("/api/generate", json={"model": MODEL, "keep_alive": -1})
        forever = client.get("/api/ps").json()["models"][0]["expires_at"]
        assert forever.startswith("2318-")
        client.post("/api/generate", json={"model": MODEL, "keep_alive": "10m"})
        expires = client.get("/api/ps").json()["models"][0]["expires_at"]
        assert expires[:4] == time.strftime("%Y", time.gmtime())
        r = client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "keep_alive": 0, "stream": False,
                                               "options": {"num_predict": 2}})
        assert r.status_code == 200
        deadline = time.monotonic() + 3
        while client.get("/api/ps").json()["models"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/api/ps").json()["models"] == []


def test_lru_eviction_with_max_loaded_models(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_loaded_models=2)
    with TestClient(create_app(settings)) as client:
        for name in ("copy-a", "copy-b", "copy-c"):
            client.post("/api/copy", json={"source": MODEL, "destination": name})
        for name in ("copy-a", "copy-b"):
            client.post("/api/generate", json={"model": name})
        client.post("/api/generate", json={"model": "copy-a", "prompt": "Hi", "stream": False,
                                           "options": {"num_predict": 1}})  # copy-a is now most recent
        client.post("/api/generate", json={"model": "copy-c"})
        loaded = {m["name"] for m in client.get("/api/ps").json()["models"]}
        assert loaded == {"copy-a:latest", "copy-c:latest"}  # copy-b, least recently used, went


def test_memory_budget_evicts_idle_models(tmp_path: Path) -> None:
    # each SmolLM2 instance is estimated at roughly 100 MB of weights + KV; 150 MB fits only one
    settings = make_settings(tmp_path, memory_budget_mb=150, max_loaded_models=5, num_ctx=512)
    with TestClient(create_app(settings)) as client:
        client.post("/api/copy", json={"source": MODEL, "destination": "other"})
        client.post("/api/generate", json={"model": MODEL})
        client.post("/api/generate", json={"model": "other"})
        assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["other:latest"]


def test_same_model_loads_once(runtime) -> None:
    settings, registry = runtime

    async def scenario() -> tuple[int, int]:
        manager = ModelManager(settings, registry)
        loads = 0
        original = manager._load

        async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal loads
            loads += 1
            return await original(*args, **kwargs)

        manager._load = counting  # type: ignore[method-assign]
        manager.start()
        try:
            await asyncio.gather(*(manager.ensure_loaded(MODEL) for _ in range(6)))
            return loads, len(manager.loaded())
        finally:
            await manager.close()

    assert asyncio.run(scenario()) == (1, 1)


def test_unload_waits_for_running_requests(runtime) -> None:
    settings, registry = runtime

    async def scenario() -> tuple[str, bool]:
        manager = ModelManager(settings, registry)
        service = InferenceService(settings, registry, manager)
        manager.start()
        try:
            reply = asyncio.create_task(_reply(service, "Write a long story about a cat."))
            while not manager.loaded() or manager.loaded()[0].scheduler.running == 0:
                await asyncio.sleep(0.01)
            await manager.unload(MODEL)  # must wait for the reply, not cut it off
            return await reply, reply.done() and not manager.loaded()
        finally:
            await manager.close()

    text, unloaded = asyncio.run(scenario())
    assert len(text) > 50 and unloaded


def test_prefix_reuse_on_second_turn(app_client: TestClient) -> None:
    history = [{"role": "system", "content": "You are a helpful assistant. " * 30},
               {"role": "user", "content": "Tell me about the sea."}]
    first = app_client.post("/api/chat", json={"model": MODEL, "messages": history, "stream": False,
                                               "options": {"temperature": 0, "num_predict": 30}}).json()
    history += [first["message"], {"role": "user", "content": "And about rivers?"}]
    second = app_client.post("/api/chat", json={"model": MODEL, "messages": history, "stream": False,
                                                "options": {"temperature": 0, "num_predict": 30}}).json()
    # turn 2 evaluates only what is new since turn 1, not the whole (longer) history
    assert first["prompt_eval_count"] > 150
    assert second["prompt_eval_count"] < 60
    assert second["prompt_eval_duration"] < first["prompt_eval_duration"]


@pytest.mark.e2e
def test_200_concurrent_requests_against_queue_16(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"DESKML_MAX_QUEUE": "16", "DESKML_NUM_PARALLEL": "4"})
    try:
        server.wait_ready()

        async def hammer() -> list[int]:
            limits = httpx.Limits(max_connections=250)
            async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
                body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}}
                results = await asyncio.gather(*(client.post("/api/generate", json=body) for _ in range(200)),
                                               return_exceptions=True)
            return [r.status_code if isinstance(r, httpx.Response) else -1 for r in results]

        statuses = asyncio.run(hammer())
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 20
        assert statuses.count(503) > 0
        ps = httpx.get(server.url + "/api/ps", timeout=10).json()["models"]
        assert all(m["running"] == 0 and m["queued"] == 0 for m in ps)  # no slot leaked
        ok = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                            "options": {"num_predict": 2}}, timeout=60)
        assert ok.status_code == 200
    finally:
        assert server.stop() == 0
