"""OpenAI dialect over HTTP, in process, against the real SmolLM2-135M model; and CORS."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import MODEL, make_settings

DET = {"temperature": 0, "max_tokens": 12}
HELLO = [{"role": "user", "content": "Say hello."}]


def sse(response: Any) -> tuple[list[dict[str, Any]], list[str]]:
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    payloads = [line[6:] for line in lines]
    return [json.loads(p) for p in payloads if p != "[DONE]"], payloads


def test_chat_non_stream_object(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "smollm2", "messages": HELLO, **DET, "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == MODEL and isinstance(body["created"], int) and body["system_fingerprint"].startswith("fp_")
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"} and choice["logprobs"] is None
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_max_tokens_stop_and_length(app_client: TestClient) -> None:
    long = app_client.post("/v1/chat/completions", json={"model": MODEL, "messages": [
        {"role": "user", "content": "Write a long story about a dragon."}], "temperature": 0,
        "max_completion_tokens": 5}).json()
    assert long["choices"][0]["finish_reason"] == "length" and long["usage"]["completion_tokens"] == 5
    counted = app_client.post("/v1/completions", json={"model": MODEL, "prompt": "1, 2, 3, 4,", "temperature": 0,
                                                         "max_tokens": 30, "stop": [" 7"]}).json()
    choice = counted["choices"][0]
    assert choice["finish_reason"] == "stop" and "7" not in choice["text"] and "6" in choice["text"]


def test_chat_stream_chunks_and_done(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/chat/completions", json={"model": "smollm2", "messages": HELLO, **DET,
                                                                  "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        chunks, payloads = sse(r)
    assert payloads[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"} and "usage" not in chunks[-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()


def test_chat_stream_include_usage(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/chat/completions", json={
        "model": "smollm2", "messages": HELLO, **DET, "stream": True, "stream_options": {"include_usage": True},
    }) as r:
        chunks, _ = sse(r)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    streamed = sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert chunks[-1]["usage"]["completion_tokens"] >= streamed - 1


def test_chat_logprobs(app_client: TestClient) -> None:
    body = app_client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, **DET,
                                                         "logprobs": True, "top_logprobs": 3}).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    assert "".join(item["token"] for item in content) == body["choices"][0]["message"]["content"]
    assert all(item["logprob"] <= 0 and len(item["top_logprobs"]) == 3 for item in content)
    assert content[0]["top_logprobs"][0]["logprob"] >= content[0]["top_logprobs"][1]["logprob"]
    # logprobs without top_logprobs: every token, no alternatives
    bare = app_client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, **DET,
                                                         "logprobs": True}).json()
    content = bare["choices"][0]["logprobs"]["content"]
    assert len(content) == bare["usage"]["completion_tokens"] and all(i["top_logprobs"] == [] for i in content)


def test_chat_seed_penalties_and_unknown_fields(app_client: TestClient) -> None:
    body = {"model": MODEL, "messages": [{"role": "developer", "content": "Answer briefly."}, *HELLO],
            "temperature": 0.9, "seed": 42, "max_tokens": 12, "presence_penalty": 0.5, "frequency_penalty": 0.5,
            "user": "someone", "metadata": {"k": "v"}, "store": False, "some_future_field": {"x": 1}}
    first = app_client.post("/v1/chat/completions", json=body)
    second = app_client.post("/v1/chat/completions", json=body)
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["choices"][0]["message"]["content"] == second.json()["choices"][0]["message"]["content"]


def test_completions_string_list_echo_and_logprobs(app_client: TestClient) -> None:
    single = app_client.post("/v1/completions", json={"model": MODEL, "prompt": "The capital of France is",
                                                       "temperature": 0, "max_tokens": 4}).json()
    assert single["object"] == "text_completion" and single["id"].startswith("cmpl-")
    assert "Paris" in single["choices"][0]["text"]
    many = app_client.post("/v1/completions", json={"model": MODEL, "prompt": ["The capital of France is", "1, 2, 3,"],
                                                     "temperature": 0, "max_tokens": 4, "echo": True,
                                                     "logprobs": 2}).json()
    first, second = many["choices"]
    assert (first["index"], second["index"]) == (0, 1)
    assert first["text"].startswith("The capital of France is") and "Paris" in first["text"]
    assert second["text"].startswith("1, 2, 3,") and "4" in second["text"][8:]
    logprobs = first["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["top_logprobs"]) == 4
    assert logprobs["text_offset"][0] == len("The capital of France is")
    assert all(len(top) <= 2 for top in logprobs["top_logprobs"])
    assert many["usage"]["completion_tokens"] == 8
    default = app_client.post("/v1/completions", json={"model": MODEL, "prompt": "Once upon a time",
                                                        "temperature": 0}).json()
    assert default["usage"]["completion_tokens"] <= 16  # OpenAI's default max_tokens


def test_completions_stream_several_prompts(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/completions", json={
        "model": MODEL, "prompt": ["Hello", "Goodbye"], "temperature": 0, "max_tokens": 3, "stream": True,
        "echo": True, "stream_options": {"include_usage": True},
    }) as r:
        chunks, payloads = sse(r)
    assert payloads[-1] == "[DONE]" and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    texts = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts[0].startswith("Hello") and texts[1].startswith("Goodbye") and finishes == {0: "length", 1: "length"}


def test_completions_suffix_unsupported_is_400(app_client: TestClient) -> None:
    r = app_client.post("/v1/completions", json={"model": MODEL, "prompt": "def add(a, b):", "suffix": "return c"})
    assert r.status_code == 400
    assert "does not support insert" in r.json()["error"]["message"]


def test_embeddings_float_base64_dimensions(app_client: TestClient) -> None:
    floats = app_client.post("/v1/embeddings", json={"model": MODEL, "input": ["first", "second text"]}).json()
    assert floats["object"] == "list" and floats["model"] == MODEL
    assert [d["index"] for d in floats["data"]] == [0, 1] and all(d["object"] == "embedding" for d in floats["data"])
    vector = floats["data"][0]["embedding"]
    assert len(vector) == 576 and floats["usage"]["prompt_tokens"] == floats["usage"]["total_tokens"] > 0
    encoded = app_client.post("/v1/embeddings", json={"model": MODEL, "input": "first",
                                                      "encoding_format": "base64"}).json()
    decoded = struct.unpack("<576f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(decoded, vector, strict=True)) < 1e-5
    short = app_client.post("/v1/embeddings", json={"model": MODEL, "input": "first", "dimensions": 32}).json()
    small = short["data"][0]["embedding"]
    assert len(small) == 32 and abs(sum(v * v for v in small) - 1) < 1e-4


def test_models_list_and_get(app_client: TestClient) -> None:
    listed = app_client.get("/v1/models").json()
    assert listed["object"] == "list"
    ids = [m["id"] for m in listed["data"]]
    assert MODEL in ids and all(m["object"] == "model" and isinstance(m["created"], int) for m in listed["data"])
    one = app_client.get("/v1/models/smollm2")
    assert one.status_code == 200 and one.json()["id"] == MODEL and one.json()["owned_by"] == "library"
    assert app_client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL


@pytest.mark.parametrize("method,path,kwargs,status,code", [
    ("post", "/v1/chat/completions", {"json": {"model": "nope", "messages": HELLO}}, 404, "model_not_found"),
    ("get", "/v1/models/nope", {}, 404, "model_not_found"),
    ("post", "/v1/embeddings", {"json": {"model": "nope", "input": "x"}}, 404, "model_not_found"),
    ("post", "/v1/completions", {"json": {"model": "nope", "prompt": "x"}}, 404, "model_not_found"),
    ("post", "/v1/chat/completions", {"content": b"{not json", "headers": {"content-type": "application/json"}},
     400, None),
    ("post", "/v1/chat/completions", {"json": {"model": MODEL, "messages": "hello"}}, 400, None),
    ("post", "/v1/chat/completions", {"json": {"model": MODEL}}, 400, None),
    ("post", "/v1/chat/completions", {"json": {"model": MODEL, "messages": HELLO, "temperature": "hot"}}, 400, None),
    ("post", "/v1/chat/completions", {"json": {"model": MODEL, "messages": HELLO, "n": 2}}, 400,
     "invalid_request_error"),
    ("post", "/v1/completions", {"json": {"model": MODEL, "prompt": [1, 2, 3]}}, 400, "invalid_request_error"),
    ("post", "/v1/embeddings", {"json": {"model": MODEL, "input": []}}, 400, "invalid_request_error"),
    ("post", "/v1/chat/completions", {"json": {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}},
     400, "invalid_request_error"),
    ("get", "/v1/nothing-here", {}, 404, None),
])
def test_errors_are_openai_error_objects(app_client: TestClient, method: str, path: str, kwargs: dict[str, Any],
                                         status: int, code: str | None) -> None:
    r = getattr(app_client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == code


def test_stream_errors_before_first_token_get_a_status(app_client: TestClient) -> None:
    r = app_client.post("/v1/chat/completions", json={"model": "nope", "messages": HELLO, "stream": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_placeholder_api_key_is_no_key_on_a_keyless_local_server(app_client: TestClient) -> None:
    # The openai SDK will not start without an api_key; what it sends then must not be a 401 where
    # anonymous access is allowed. A deskml key that is wrong still is.
    for placeholder in ("x", "ollama", "sk-anything"):
        r = app_client.get("/v1/models", headers={"Authorization": f"Bearer {placeholder}"})
        assert r.status_code == 200, r.text
    wrong = app_client.get("/v1/models", headers={"Authorization": "Bearer dk_00000000_" + "A" * 43})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


# CORS ------------------------------------------------------------------------------------------
STAINLESS = "authorization, content-type, x-stainless-os, x-stainless-lang, x-stainless-retry-count"


@pytest.fixture(scope="module")
def cors_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = make_settings(tmp_path_factory.mktemp("cors"), origins=["https://app.example.com"])
    with TestClient(create_app(settings)) as client:
        yield client


def preflight(client: TestClient, origin: str) -> Any:
    return client.options("/v1/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": STAINLESS})


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080", "http://localhost",
                                    "https://localhost:5173", "http://[::1]:9000", "app://deskml", "file://",
                                    "tauri://localhost", "capacitor://localhost", "https://app.example.com"])
def test_cors_preflight_allows_local_origins_and_stainless_headers(cors_client: TestClient, origin: str) -> None:
    r = preflight(cors_client, origin)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == origin
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-stainless-os", "x-stainless-retry-count"} <= allowed
    assert "POST" in r.headers["access-control-allow-methods"]


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://localhost.evil.com", "null",
                                    "http://127.0.0.1.nip.io"])
def test_cors_rejects_other_origins(cors_client: TestClient, origin: str) -> None:
    # Refused outright (issue 13), not merely left without CORS headers: a simple request is never served.
    r = preflight(cors_client, origin)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    simple = cors_client.get("/v1/models", headers={"Origin": origin})
    assert simple.status_code == 403 and "access-control-allow-origin" not in simple.headers
    assert simple.json()["error"]["type"] == "permission_error"


def test_cors_simple_request_carries_headers(cors_client: TestClient, tmp_path: Path) -> None:
    r = cors_client.get("/v1/models", headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
    missing = cors_client.get("/v1/models/nope", headers={"Origin": "tauri://localhost"})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "tauri://localhost"
