"""The runtime on the fake engine (`tests/fake_engine.py`): no model loads, so these run in seconds.

They prove that `ModelManager`, `InferenceService` and the dialects depend only on the engine contract:
streamed events arrive in order, a non-streamed reply is the stream collected, and a stream the client
abandons frees its slot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.types import ChatMessage, ChatRequest, Done, Event, GenerateRequest, TextDelta, collect
from deskml.runtime.inference import InferenceService
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.model_store import ModelStore
from deskml.runtime.registry import Registry
from tests.conftest import MODEL, make_settings
from tests.fake_engine import FakeLoader, words

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}]}


@pytest.fixture(scope="module")
def fake() -> FakeLoader:
    return FakeLoader()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, fake: FakeLoader) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"))
    with TestClient(create_app(settings, engine_loader=fake)) as client:
        yield client


def test_streamed_chat_events_arrive_in_order(client: TestClient, fake: FakeLoader) -> None:
    with client.stream("POST", "/api/chat", json={**CHAT, "stream": True}) as reply:
        assert reply.status_code == 200
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert [line["message"]["content"] for line in lines[:-1]] == ["one ", "two ", "three"]
    assert not any(line["done"] for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == 3 and final["prompt_eval_count"] > 0 and final["total_duration"] > 0
    request = fake.engine.requests[-1]
    assert request.prompt is None and request.messages[-1].content == "one two three"
    assert request.sampling.temperature == 0.8  # Ollama's default, resolved once by the runtime


def test_unstreamed_replies_are_the_stream_collected(client: TestClient, fake: FakeLoader) -> None:
    ollama = client.post("/api/chat", json={**CHAT, "stream": False}).json()
    assert ollama["message"]["content"] == "one two three" and ollama["eval_count"] == 3
    openai = client.post("/v1/chat/completions", json=CHAT).json()
    assert openai["choices"][0]["message"]["content"] == "one two three"
    assert openai["choices"][0]["finish_reason"] == "stop" and openai["usage"]["completion_tokens"] == 3
    cut = client.post("/api/generate", json={"model": MODEL, "prompt": "a b c d", "raw": True, "stream": False,
                                             "options": {"num_predict": 2, "temperature": 0}}).json()
    assert cut["response"] == "a b " and cut["done_reason"] == "length"
    raw = fake.engine.requests[-1]
    assert raw.prompt == "a b c d" and raw.sampling.num_predict == 2 and raw.sampling.temperature == 0


def test_structured_output_and_tool_calls(client: TestClient) -> None:
    shaped = client.post("/api/chat", json={**CHAT, "stream": False, "format": "json"}).json()
    assert json.loads(shaped["message"]["content"]) == {"echo": "one two three"}
    tool = {"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    called = client.post("/v1/chat/completions", json={**CHAT, "tools": [tool], "tool_choice": "required"}).json()
    choice = called["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["weather"]


def test_embeddings_come_from_the_engine(client: TestClient) -> None:
    reply = client.post("/api/embed", json={"model": MODEL, "input": ["hello", "hello", "other"]}).json()
    first, second, third = reply["embeddings"]
    assert first == second != third and abs(sum(v * v for v in first) - 1) < 1e-6


async def _cancel_then_reuse(data_dir: Path) -> None:
    settings = make_settings(data_dir, num_parallel=1)  # one slot: a leaked one would block the next request
    registry = Registry(ModelStore.for_settings(settings))
    loader = FakeLoader(token_delay=0.005)
    manager = ModelManager(settings, registry, loader=loader)
    manager.start()
    service = InferenceService(settings, registry, manager)
    try:
        long = ChatRequest(model=MODEL, messages=[ChatMessage(role="user", content="word " * 2000)])
        events = service.chat(long)
        assert isinstance(await anext(events), TextDelta)
        await events.aclose()  # what a client disconnect does
        engine = loader.engine
        assert engine.active == 0  # the engine's stream was closed, not left to the garbage collector
        [model] = manager.loaded()
        assert model.scheduler.idle and model.engine is engine

        async def short() -> list[Event]:
            return [e async for e in service.generate(GenerateRequest(model=MODEL, prompt="x y", raw=True))]

        result = collect(await asyncio.wait_for(short(), timeout=10))
        assert result.text == "x y" and isinstance(result.done, Done) and result.done.timings.eval_count == 2
        assert len(loader.engines) == 1  # the same loaded model answered
    finally:
        await manager.close()
    assert loader.engine.closed


def test_cancelling_a_stream_frees_its_slot(tmp_path: Path) -> None:
    asyncio.run(_cancel_then_reuse(tmp_path))


def test_fake_words_keep_the_text() -> None:
    assert "".join(words("  a  b c ")) == "  a  b c " and words("") == []
