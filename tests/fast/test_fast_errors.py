"""Errors on the text routes, on the fake engine: bad JSON, wrong types and unknown models are 4xx in
each dialect's shape (Ollama `{"error"}`, an OpenAI error object, the seed's `{success: false, error}`),
lone surrogates name their field, the body limit and the Host guard answer before any model loads,
no hostile body gets a 5xx, and an engine failing mid-reply ends the stream with an error."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.core.errors import EngineError
from deskml.core.types import EngineRequest, Event
from deskml.engines.contract import LoadConfig
from tests.fake_engine import FakeEngine, FakeLoader
from tests.fast.conftest import MODEL, AppFactory, Reply, ndjson

JSON = {"content-type": "application/json"}
HELLO = [{"role": "user", "content": "hello"}]


def _message(path: str, response: Reply) -> str:
    """The error's text, once the body is checked to be exactly the shape of `path`'s dialect."""
    body = response.json()
    if path.startswith("/v1/"):
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
        return str(body["error"]["message"])
    if path.startswith("/api/llm/"):
        assert set(body) == {"success", "error"} and body["success"] is False, body
        return str(body["error"])
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return str(body["error"])


@pytest.mark.parametrize(("path", "body", "status", "needle"), [
    ("/api/chat", "{not json", 400, "invalid JSON"),
    ("/api/generate", "[1, 2]", 400, "valid dictionary"),
    ("/api/chat", '{"messages": []}', 400, "model is required"),
    ("/api/generate", '{"model": "smollm2", "prompt": 5}', 400, "prompt"),
    ("/api/chat", '{"model": "smollm2", "messages": "hi"}', 400, "messages"),
    ("/api/chat", '{"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
    ("/api/generate", '{"model": "smollm2", "prompt": "hi", "format": "yaml"}', 400, "format"),
    ("/api/generate", '{"model": "smollm2", "prompt": "hi", "keep_alive": "soon"}', 400, "duration"),
    ("/api/generate", '{"model": "smollm2", "prompt": "hi", "options": {"temperature": "hot"}}', 400, "temperature"),
    ("/api/generate", '{"model": "../../etc/passwd", "prompt": "hi"}', 400, "invalid model name"),
    ("/api/chat", '{"model": "ghost:1b", "messages": []}', 404, "model 'ghost:1b' not found"),
    ("/api/embed", '{"model": "ghost", "input": "x"}', 404, "not found"),
    ("/v1/chat/completions", "{not json", 400, "invalid JSON"),
    ("/v1/chat/completions", '{"model": "smollm2", "messages": "hello"}', 400, "messages"),
    ("/v1/chat/completions", '{"model": "smollm2"}', 400, "messages"),
    ("/v1/chat/completions", '{"model": "smollm2", "messages": [], "temperature": "hot"}', 400, "temperature"),
    ("/v1/chat/completions", '{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "n": 2}', 400,
     "n"),
    ("/v1/completions", '{"model": "smollm2", "prompt": [1, 2, 3]}', 400, "prompt"),
    ("/v1/embeddings", '{"model": "smollm2", "input": []}', 400, "input"),
    ("/v1/chat/completions", '{"model": "ghost", "messages": [{"role": "user", "content": "x"}], "stream": true}',
     404, "not found"),
    ("/v1/completions", '{"model": "ghost", "prompt": "x"}', 404, "not found"),
    ("/api/llm/generate", "{nope", 400, "invalid JSON"),
    ("/api/llm/generate", '{"prompt": ""}', 400, "prompt"),
    ("/api/llm/generate", '{"prompt": "hi", "max_length": "lots"}', 400, "max_length"),
    ("/api/llm/generate", '{"prompt": "hi", "model": "no-such-llm"}', 404, "not found"),
])
def test_bad_requests_are_4xx_in_the_dialects_shape(client: TestClient, path: str, body: str, status: int,
                                                    needle: str) -> None:
    reply = client.post(path, content=body, headers=JSON)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")  # even where a stream was asked for
    assert needle.lower() in _message(path, reply).lower()
    if path.startswith("/v1/") and status == 404:
        assert reply.json()["error"]["code"] == "model_not_found" and reply.json()["error"]["param"] == "model"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/chat", '{"model": "smollm2", "messages": [{"role": "user", "content": "secret \\ud800"}]}',
     "messages[0].content"),
    ("/api/generate", '{"model": "smollm2", "prompt": "hi", "system": "secret \\udc00"}', "system"),
    ("/api/embed", '{"model": "smollm2", "input": ["fine", "secret \\ud800"]}', "input[1]"),
    ("/v1/chat/completions", '{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], '
     '"stop": ["secret \\udfff"]}', "stop[0]"),
    ("/v1/completions", '{"model": "smollm2", "prompt": "secret \\udfff"}', "prompt"),
    ("/v1/embeddings", '{"model": "smollm2", "input": "secret \\ud800"}', "input"),
])
def test_a_lone_surrogate_is_400_naming_the_field(client: TestClient, path: str, body: str, field: str) -> None:
    reply = client.post(path, content=body.encode(), headers=JSON)
    assert reply.status_code == 400, reply.text
    assert f"invalid Unicode (lone surrogate) in {field}" in _message(path, reply)
    assert "secret" not in reply.text  # the prompt is not echoed back
    if path.startswith("/v1/"):
        assert reply.json()["error"]["param"] == field


def test_body_limit_and_host_guard_answer_before_any_model_loads(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader, max_upload_mb=0.001)
    big = json.dumps({"model": MODEL, "prompt": "x" * 5000, "messages": HELLO, "input": "x"})
    for path in ("/api/generate", "/v1/chat/completions", "/v1/embeddings", "/api/llm/generate"):
        whole = client.post(path, content=big, headers=JSON)
        chunked = client.post(path, content=(b"x" * 1000 for _ in range(3)), headers=JSON)  # no Content-Length
        for reply in (whole, chunked):
            assert reply.status_code == 413 and "DESKML_MAX_UPLOAD_MB" in _message(path, reply), path
        rebound = client.post(path, json={"model": MODEL, "prompt": "x", "messages": HELLO},
                              headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and "DESKML_ALLOWED_HOSTS" in _message(path, rebound), path
        if path.startswith("/v1/"):
            assert rebound.json()["error"]["type"] == "permission_error"
    assert loader.engines == []


def test_unknown_routes_are_404_in_the_dialects_shape(client: TestClient) -> None:
    for path in ("/v1/nothing-here", "/api/nothing-here"):
        reply = client.post(path, json={})
        assert reply.status_code == 404 and _message(path, reply)


BAD_VALUES: list[Any] = [None, -1, 2**70, "x", [None], {}]
ROUTES: dict[str, dict[str, Any]] = {
    "/api/chat": {"model": MODEL, "messages": HELLO, "stream": False, "options": {}, "format": "json",
                  "tools": [], "keep_alive": "5m", "think": False},
    "/api/generate": {"model": MODEL, "prompt": "hi", "stream": False, "system": "s", "raw": False,
                      "images": [], "context": [1]},
    "/api/embed": {"model": MODEL, "input": "x", "dimensions": 4, "truncate": True},
    "/v1/chat/completions": {"model": MODEL, "messages": HELLO, "max_tokens": 3, "stop": "z", "tools": [],
                             "tool_choice": "auto", "response_format": {"type": "text"}, "stream_options": None},
    "/v1/completions": {"model": MODEL, "prompt": "hi", "max_tokens": 3, "echo": False, "logprobs": None},
    "/v1/embeddings": {"model": MODEL, "input": "x", "encoding_format": "float"},
    "/api/llm/generate": {"prompt": "hi", "max_length": 3, "temperature": 0.5},
}


@pytest.mark.parametrize("path", list(ROUTES))
def test_hostile_fields_never_get_a_5xx(client: TestClient, path: str) -> None:
    """Every field of a text route swapped for values of the wrong type or range: a 200 or a 4xx in the
    dialect's shape, never a 5xx (a slower sweep, of several thousand bodies, found none either)."""
    base = ROUTES[path]
    refused = 0
    for name in base:
        for value in BAD_VALUES:
            reply = client.post(path, json={**base, name: value})
            assert reply.status_code < 500, (name, value, reply.text)
            if reply.status_code >= 400:
                refused += 1
                assert _message(path, reply), (name, value)
    assert refused >= len(base)  # the sweep does reach the validators


class _Failing(FakeEngine):
    """Fails after its first token: with an EngineError, or with an unexpected error when asked "boom"."""

    async def stream(self, request: EngineRequest) -> AsyncGenerator[Event, None]:
        async for event in super().stream(request):
            yield event
            if "boom" in (request.prompt or request.messages[-1].content):
                raise RuntimeError("a private detail")
            raise EngineError("the engine fell over")


class _FailingLoader(FakeLoader):
    async def __call__(self, config: LoadConfig) -> FakeEngine:
        engine = _Failing(config)
        self.engines.append(engine)
        return engine


def test_an_engine_failing_mid_reply_ends_the_stream_with_an_error(fake_app: AppFactory) -> None:
    client = fake_app(loader=_FailingLoader())
    lines = ndjson(client.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "a b"}]}))
    assert lines[0]["message"]["content"] == "a " and lines[-1] == {"error": "the engine fell over"}
    events = client.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": "boom now"}], "stream": True}).text.split("\n\n")
    assert events[-1] == "" and "[DONE]" not in events  # as OpenAI: the error event ends the stream
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and error["message"] == "internal error: RuntimeError"
    whole = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO})
    assert whole.status_code == 500 and whole.json()["error"]["code"] == "engine_error"  # collected: a status
    seed = client.post("/api/llm/generate", json={"prompt": "x y"})
    assert seed.status_code == 500 and seed.json() == {"success": False, "error": "the engine fell over"}
    [model] = client.get("/api/ps").json()["models"]
    assert (model["running"], model["queued"]) == (0, 0)  # every failed reply gave its slot back


def test_an_engine_failing_before_its_first_token_is_a_status(fake_app: AppFactory) -> None:
    def refuse(request: EngineRequest) -> str:
        raise EngineError("no good")

    client = fake_app(loader=FakeLoader(reply=refuse))
    for path, body in (("/api/chat", {"model": MODEL, "messages": HELLO}),
                       ("/v1/chat/completions", {"model": MODEL, "messages": HELLO, "stream": True})):
        reply = client.post(path, json=body)
        assert reply.status_code == 500 and reply.headers["content-type"] == "application/json"
        assert _message(path, reply) == "no good"
