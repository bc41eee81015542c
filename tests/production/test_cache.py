"""Response cache: deterministic requests only; a hit streams the same events as the fresh reply,
is marked X-Deskml-Cache: hit, and can be switched off per request and globally; memory and Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.types import ChatMessage, ChatRequest, Done, GenerateRequest, SamplingOptions, TextDelta
from deskml.services.cache import MemoryStore, ResponseCacheService, cache_key
from tests.conftest import MODEL, make_settings, services_of

pytestmark = pytest.mark.slow  # every test here loads the real model

_VOLATILE = {"created_at", "total_duration", "load_duration"}


def _lines(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _stable(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k not in _VOLATILE} for line in lines]


def test_hit_streams_identically_and_is_marked(tmp_path: Path, storage: str | None) -> None:
    settings = make_settings(tmp_path, auth="off", redis_url=storage)
    with TestClient(create_app(settings)) as client:
        body = {"model": MODEL, "prompt": "Name three colors.", "options": {"temperature": 0, "num_predict": 16}}
        fresh = client.post("/api/generate", json=body)
        again = client.post("/api/generate", json=body)
        assert fresh.headers["x-deskml-cache"] == "miss" and again.headers["x-deskml-cache"] == "hit"
        assert fresh.headers["content-type"] == again.headers["content-type"] == "application/x-ndjson"
        first, second = _lines(fresh), _lines(again)
        assert len(first) == len(second) > 3  # streamed token by token, both times
        assert _stable(first) == _stable(second)
        assert second[-1]["done"] is True and second[-1]["eval_count"] == first[-1]["eval_count"]
        assert second[-1]["load_duration"] == 0

        # the same request collected (stream false) is answered from the same entry
        whole = client.post("/api/generate", json={**body, "stream": False})
        assert whole.headers["x-deskml-cache"] == "hit"
        assert whole.json()["response"] == "".join(line["response"] for line in first)

        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "stream": False,
                "options": {"seed": 42, "num_predict": 12}}  # a fixed seed is deterministic too
        one, two = client.post("/api/chat", json=chat), client.post("/api/chat", json=chat)
        assert (one.headers["x-deskml-cache"], two.headers["x-deskml-cache"]) == ("miss", "hit")
        assert one.json()["message"] == two.json()["message"]


def test_cache_is_for_deterministic_requests_and_can_be_bypassed(tmp_path: Path, storage: str | None) -> None:
    settings = make_settings(tmp_path, auth="off", redis_url=storage)
    with TestClient(create_app(settings)) as client:
        sampled = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}}
        for _ in range(2):
            assert "x-deskml-cache" not in client.post("/api/generate", json=sampled).headers

        body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"temperature": 0, "num_predict": 4}}
        assert client.post("/api/generate", json=body).headers["x-deskml-cache"] == "miss"
        off = client.post("/api/generate", json=body, headers={"X-Deskml-Cache": "off"})
        assert "x-deskml-cache" not in off.headers
        refresh = client.post("/api/generate", json=body, headers={"Cache-Control": "no-cache"})
        assert refresh.headers["x-deskml-cache"] == "miss"
        assert client.post("/api/generate", json=body).headers["x-deskml-cache"] == "hit"
        # any change to the request is another key: options, system, model parameters
        changed = {**body, "options": {"temperature": 0, "num_predict": 5}}
        assert client.post("/api/generate", json=changed).headers["x-deskml-cache"] == "miss"
        assert client.post("/api/generate", json={**body, "system": "Be brief."}).headers["x-deskml-cache"] == "miss"


def test_cache_switched_off_globally(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, auth="off", cache=False))) as client:
        body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"temperature": 0, "num_predict": 4}}
        assert [("x-deskml-cache" in client.post("/api/generate", json=body).headers) for _ in range(2)] == [
            False, False]
        assert services_of(client.app).inference.cache is None


def test_key_covers_model_identity_and_whole_request() -> None:
    identity = {"name": MODEL, "digest": "sha256:aa", "manifest": {"system": None}, "num_ctx": 2048}
    base = ChatRequest(model=MODEL, messages=[ChatMessage(role="user", content="hi")],
                       options=SamplingOptions(temperature=0))
    key = cache_key("chat", identity, base)
    assert key == cache_key("chat", dict(identity), base.model_copy(deep=True))
    assert key == cache_key("chat", identity, base.model_copy(update={"keep_alive": 60.0}))
    assert key != cache_key("chat", {**identity, "digest": "sha256:bb"}, base)
    assert key != cache_key("chat", {**identity, "manifest": {"system": "x"}}, base)
    assert key != cache_key("generate", identity, base)
    other = base.model_copy(update={"options": SamplingOptions(temperature=0, top_k=1)})
    assert key != cache_key("chat", identity, other)
    with_image = base.model_copy(update={"messages": [ChatMessage(role="user", content="hi", images=[b"\xff\x00"])]})
    assert key != cache_key("chat", identity, with_image)


def test_memory_store_is_lru_with_ttl_and_byte_bound() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_entries=2, max_bytes=800)
        await store.put("a", b"1" * 10, ttl=60)
        await store.put("b", b"2" * 10, ttl=60)
        assert await store.get("a") == b"1" * 10  # a is now the most recent
        await store.put("c", b"3" * 10, ttl=60)
        assert await store.get("b") is None and await store.get("a") is not None
        await store.put("big", b"x" * 200, ttl=60)  # over 1/8 of the byte budget: not kept
        assert await store.get("big") is None
        await store.put("short", b"s", ttl=0.01)
        await asyncio.sleep(0.03)
        assert await store.get("short") is None
        assert store.bytes == sum(len(v) for _, v in store._items.values())

    asyncio.run(scenario())


def test_unfinished_reply_is_not_stored() -> None:
    async def scenario() -> tuple[int, int]:
        service = ResponseCacheService(MemoryStore(16, 1 << 20), ttl=60)
        request = GenerateRequest(model=MODEL, prompt="x", options=SamplingOptions(temperature=0))
        identity = {"name": MODEL, "digest": "d"}

        async def produce() -> Any:
            yield TextDelta(text="a")
            yield TextDelta(text="b")
            yield Done(reason="stop", model=MODEL)

        events = service.stream("generate", identity, request, request.options, produce)
        await anext(events)
        await events.aclose()  # the client went away after one token
        stored_after_cut = len(service.store)  # type: ignore[arg-type]
        async for _ in service.stream("generate", identity, request, request.options, produce):
            pass
        return stored_after_cut, len(service.store)  # type: ignore[arg-type]

    assert asyncio.run(scenario()) == (0, 1)
