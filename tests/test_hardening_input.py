"""Issue 13, "no input gives a 5xx, a hang or a second model copy": lone surrogates, errors that kept a
connection, huge keep_alive and sampling values, num_ctx copies and truncation of very long chats.

Runs on the real bundled model (smollm2) through the in-process app, and a real uvicorn server for the
keep-alive connection check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Request
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.durations import parse_keep_alive
from deskml.core.errors import BadRequest
from deskml.core.types import EngineRequest, Event, SamplingOptions
from deskml.engines import llama_cpp
from deskml.engines.llama_cpp import sampling_body
from tests.conftest import MODEL, free_port, make_settings, services_of

SECRET = "my private words"
HUGE_KEEP_ALIVES = [1e300, 999999999999999999999, "99999999999h"]


def _post_raw(client: TestClient, path: str, body: str) -> httpx.Response:
    """Post JSON text as written: `\\ud800` stays an escape, which json.dumps of a str would not give."""
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


def _error(response: httpx.Response) -> str:
    error = response.json()["error"]
    return error["message"] if isinstance(error, dict) else error


# 1. lone surrogates -----------------------------------------------------------------------------------
SURROGATE_CASES = [
    ("/api/embed", '{"model": "smollm2", "input": ["fine", "' + SECRET + ' \\ud800"]}', "input[1]"),
    ("/api/embed", '{"model": "all-minilm", "input": "' + SECRET + ' \\udc00"}', "input"),
    ("/api/embeddings", '{"model": "smollm2", "prompt": "' + SECRET + ' \\ud800"}', "prompt"),
    ("/v1/embeddings", '{"model": "smollm2", "input": "' + SECRET + ' \\ud800"}', "input"),
    ("/api/chat", '{"model": "smollm2", "stream": false, "messages": [{"role": "user", "content": "'
     + SECRET + ' \\ud800"}]}', "messages[0].content"),
    ("/api/chat", '{"model": "smollm2", "stream": true, "messages": [{"role": "user", "content": "hi"}], '
     '"options": {"stop": ["\\ud800"]}}', "options.stop[0]"),
    ("/api/generate", '{"model": "smollm2", "stream": false, "prompt": "hi", "system": "' + SECRET + '\\ud800"}',
     "system"),
    ("/v1/chat/completions", '{"model": "smollm2", "messages": [{"role": "user", "content": "ok"}, '
     '{"role": "assistant", "content": "", "tool_calls": [{"id": "c", "type": "function", "function": '
     '{"name": "f", "arguments": "{\\"a\\": \\"\\ud800\\"}"}}]}]}', "messages[1].tool_calls[0].function.arguments"),
    ("/v1/completions", '{"model": "smollm2", "prompt": "' + SECRET + ' \\udfff"}', "prompt"),
]


@pytest.mark.parametrize(("path", "body", "field"), SURROGATE_CASES)
def test_lone_surrogate_is_400_naming_the_field(app_client: TestClient, path: str, body: str, field: str) -> None:
    r = _post_raw(app_client, path, body)
    assert r.status_code == 400, r.text
    message = _error(r)
    assert f"invalid Unicode (lone surrogate) in {field}" in message
    assert SECRET not in r.text and "parse error" not in message  # no echo of the prompt or llama.cpp's parser
    if path.startswith("/v1/"):
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == field


def test_valid_surrogate_pair_still_works(app_client: TestClient) -> None:
    r = _post_raw(app_client, "/api/embed", '{"model": "smollm2", "input": "smile \\ud83d\\ude00"}')
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 1


def test_error_quoting_a_lone_surrogate_is_still_a_json_reply(app_client: TestClient) -> None:
    r = _post_raw(app_client, "/api/show", '{"model": "x\\udc00"}')
    assert 400 <= r.status_code < 500 and isinstance(r.json()["error"], str)


# 2. an unhandled error leaves the keep-alive connection usable --------------------------------------------
class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """deskml's full middleware stack (create_app) plus two test-only routes, served by real uvicorn."""
    app = create_app(make_settings(tmp_path_factory.mktemp("boom")))

    @app.get("/test/port")
    async def port(request: Request) -> dict[str, int]:
        return {"port": request.client.port if request.client else 0}

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("deterministic failure")

    @app.post("/v1/test/boom")
    async def boom_openai() -> None:
        raise KeyError("x")

    port_number = free_port()
    server = _ThreadedServer(uvicorn.Config(app, host="127.0.0.1", port=port_number, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port_number}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_unhandled_error_is_a_whole_500_and_the_connection_stays_open(failing_server: str) -> None:
    with httpx.Client(base_url=failing_server, timeout=10) as client:
        before = client.get("/test/port").json()["port"]
        failed = client.get("/test/boom")
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error: RuntimeError"}
        assert failed.headers.get("x-request-id") and failed.headers.get("connection", "") != "close"
        openai = client.post("/v1/test/boom")
        assert openai.status_code == 500 and openai.json()["error"]["type"] == "server_error"
        after = client.get("/test/port")
        assert after.status_code == 200
        # the same TCP connection answered after both errors (a new one would have another client port)
        assert after.json()["port"] == before
        assert client.get("/api/version").status_code == 200


# 3. keep_alive beyond any date --------------------------------------------------------------------------
def test_huge_keep_alive_parses_as_forever() -> None:
    for value in [*HUGE_KEEP_ALIVES, 10**400, "1e309", float("inf")]:
        assert parse_keep_alive(value) == -1.0
    assert parse_keep_alive("5m") == 300.0 and parse_keep_alive(0) == 0.0 and parse_keep_alive(-1) == -1.0
    with pytest.raises(BadRequest):
        parse_keep_alive(float("nan"))


def _ps(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/api/ps")
    assert r.status_code == 200, r.text
    return r.json()["models"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("keep_alive", HUGE_KEEP_ALIVES)
def test_huge_keep_alive_keeps_ps_working(app_client: TestClient, keep_alive: object) -> None:
    generated = app_client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                      "keep_alive": keep_alive, "options": {"num_predict": 1}})
    assert generated.status_code == 200, generated.text
    models = _ps(app_client)
    assert [m["expires_at"] for m in models if m["name"] == MODEL and m["kind"] == "llm"] == [
        "2318-01-01T00:00:00.000000Z"]
    for model in (MODEL, "all-minilm"):  # an embedding instance of the chat model, and a service model
        embedded = app_client.post("/api/embed", json={"model": model, "input": "hi", "keep_alive": keep_alive})
        assert embedded.status_code == 200, embedded.text
    expiries = {m["name"]: m["expires_at"] for m in _ps(app_client) if m["kind"] != "llm"}
    assert expiries and all(value.startswith("2318-01-01") for value in expiries.values()), expiries
    # back to an ordinary keep_alive: a sane date a few minutes ahead
    app_client.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})
    row = next(m for m in _ps(app_client) if m["name"] == MODEL and m["kind"] == "llm")
    assert row["expires_at"] < "2100"


# 4. integers llama.cpp reads as 32-bit ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/generate", {"prompt": "hi", "options": {"num_predict": 10**18}}, "options.num_predict"),
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 10**18}},
     "options.num_predict"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**18}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2**31},
     "max_completion_tokens"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 10**18}, "max_tokens"),
    ("/api/generate", {"prompt": "hi", "options": {"repeat_last_n": -5}}, "options.repeat_last_n"),
    ("/api/generate", {"prompt": "hi", "options": {"num_keep": 2**40}}, "options.num_keep"),
    ("/api/generate", {"prompt": "hi", "options": {"mirostat": 7}}, "options.mirostat"),
])
def test_out_of_range_integers_are_400_naming_field_and_range(app_client: TestClient, path: str,
                                                             body: dict[str, Any], field: str) -> None:
    r = app_client.post(path, json={"model": MODEL, "stream": False, **body})
    assert r.status_code == 400, r.text
    message = _error(r)
    assert message.startswith(field) and "-1486618624" not in message
    assert "2147483647" in message or "0 (off), 1 or 2" in message


def test_nan_sampling_value_is_a_clear_400(app_client: TestClient) -> None:
    for path, body in [
        ("/api/generate", '{"model": "smollm2", "prompt": "hi", "stream": false, "options": {"temperature": NaN}}'),
        ("/v1/chat/completions", '{"model": "smollm2", "temperature": NaN, "messages": [{"role": "user", '
                                 '"content": "hi"}]}'),
    ]:
        r = _post_raw(app_client, path, body)
        assert r.status_code == 400 and "temperature" in _error(r) and "json.exception" not in _error(r)


def test_integers_ollama_accepts_any_value_of_still_work(app_client: TestClient) -> None:
    """seed and top_k saturate instead of wrapping; repeat_last_n -1 means the whole context, as in Ollama."""
    r = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "Hi", "stream": False,
        "options": {"num_predict": 2, "seed": 10**20, "top_k": 10**20, "repeat_last_n": -1, "num_keep": -1}})
    assert r.status_code == 200, r.text
    assert r.json()["eval_count"] == 2
    r = app_client.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                                      "max_tokens": 2, "seed": -(10**20)})
    assert r.status_code == 200, r.text


def test_sampling_body_masks_seed_and_clamps_to_32_bits() -> None:
    body = sampling_body(SamplingOptions(seed=-1, top_k=10**20, num_predict=10**12, num_keep=2**40))
    assert body["seed"] == 0xFFFFFFFF  # llama.cpp's "random", as Ollama's -1
    assert body["top_k"] == 2**31 - 1 and body["max_tokens"] == 2**31 - 1 and body["n_keep"] == 2**31 - 1
    assert sampling_body(SamplingOptions(seed=2**32 + 7))["seed"] == 7


# 5. one copy of a model whatever num_ctx asks --------------------------------------------------------------
def test_num_ctx_beyond_the_model_keeps_one_copy(app_client: TestClient) -> None:
    manager = services_of(app_client.app).manager
    for options, expected_ctx in [({}, 2048), ({"num_ctx": 10**9}, 8192), ({}, 2048), ({"num_ctx": 2048}, 2048)]:
        r = app_client.post("/api/generate", json={"model": MODEL, "options": options})
        assert r.status_code == 200, r.text
        rows = [m for m in _ps(app_client) if m["name"] == MODEL and m["kind"] == "llm"]
        assert [m["context_length"] for m in rows] == [expected_ctx]
        assert [m.num_ctx for m in manager.loaded() if m.name == MODEL and m.kind == "llm"] == [expected_ctx]
    generated = app_client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                      "options": {"num_predict": 1, "num_ctx": 10**9}})
    assert generated.status_code == 200
    assert len([m for m in manager.loaded() if m.name == MODEL and m.kind == "llm"]) == 1


# 6. truncating a very long chat costs a couple of tries, not one per message -------------------------------
def test_truncating_ten_thousand_messages_takes_few_engine_tries(app_client: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []
    original = llama_cpp.LlamaCppModel.stream

    async def counted(self: llama_cpp.LlamaCppModel, request: EngineRequest) -> AsyncIterator[Event]:
        tries.append(len(request.messages))
        if len(tries) > 6:  # the old code tried once per dropped message (10,000 tries): fail fast instead
            raise RuntimeError("too many tries")
        async for event in original(self, request):
            yield event

    monkeypatch.setattr(llama_cpp.LlamaCppModel, "stream", counted)
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": f"message {i}: the quick brown fox jumps over the lazy dog"} for i in range(10_000)]
    messages.insert(0, {"role": "system", "content": "You are terse."})
    messages.append({"role": "user", "content": "Say hi."})
    body = {"model": MODEL, "messages": messages, "stream": False, "truncate": True,
            "options": {"num_predict": 1, "num_ctx": 256}}
    started = time.perf_counter()
    r = app_client.post("/api/chat", content=json.dumps(body), headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - started
    assert r.status_code == 200, r.text
    assert 0 < r.json()["prompt_eval_count"] <= 256
    assert len(tries) <= 3, tries
    assert tries[0] < 1000  # what cannot fit was dropped before the engine tokenised it
    timings = r.json()
    engine_s = (timings["prompt_eval_duration"] + timings["eval_duration"] + timings["load_duration"]) / 1e9
    assert elapsed - engine_s < 20, (elapsed, engine_s)  # generous: shared CI cores; about 0.6 s when idle


def test_truncated_generate_keeps_the_end_of_the_prompt(app_client: TestClient) -> None:
    prompt = "filler words " * 20_000 + "The last line."
    r = app_client.post("/api/generate", json={"model": MODEL, "prompt": prompt, "stream": False, "truncate": True,
                                               "options": {"num_predict": 1, "num_ctx": 256}})
    assert r.status_code == 200, r.text
    assert 0 < r.json()["prompt_eval_count"] <= 256


def test_without_truncate_a_long_chat_is_still_a_400(app_client: TestClient) -> None:
    messages = [{"role": "user", "content": "word " * 400} for _ in range(3)]
    r = app_client.post("/api/chat", json={"model": MODEL, "messages": messages, "stream": False,
                                           "options": {"num_ctx": 256}})
    assert r.status_code == 400 and "context length" in r.json()["error"]
