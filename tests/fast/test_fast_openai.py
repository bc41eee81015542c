"""The OpenAI dialect over HTTP on the fake engine: chat and completion objects, SSE framing (one
`data:` event per chunk, `[DONE]` last), usage, sampling parameters reaching the engine, tool calls
streamed and whole, response_format, and embeddings as floats and base64."""

from __future__ import annotations

import base64
import json
import math
import struct

from fastapi.testclient import TestClient

from tests.fake_engine import FakeLoader
from tests.fast.conftest import MODEL, last_request, sse

HELLO = [{"role": "user", "content": "hello big world"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}


def test_chat_completion_object_and_usage(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={"model": "smollm2", "messages": HELLO})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion" and body["model"] == MODEL
    assert isinstance(body["created"], int) and body["system_fingerprint"].startswith("fp_")
    assert body["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "hello big world", "refusal": None}}]
    usage = body["usage"]
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    cut = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 2}).json()
    assert cut["choices"][0]["finish_reason"] == "length" and cut["choices"][0]["message"]["content"] == "hello big "
    assert cut["usage"]["completion_tokens"] == 2


def test_chat_stream_is_sse_chunks_then_done(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True})
    assert reply.status_code == 200
    chunks = sse(reply)
    assert len({c["id"] for c in chunks}) == 1 and {c["object"] for c in chunks} == {"chat.completion.chunk"}
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert [d["content"] for d in deltas[1:-1]] == ["hello ", "big ", "world"] and deltas[-1] == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert all("usage" not in c for c in chunks)  # only when asked for


def test_stream_include_usage_adds_a_last_chunk_without_choices(client: TestClient) -> None:
    reply = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "stream": True,
                                                      "stream_options": {"include_usage": True}})
    *chunks, last = sse(reply)
    assert all(c["usage"] is None for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 3
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 3


def test_sampling_parameters_reach_the_engine(client: TestClient, loader: FakeLoader) -> None:
    client.post("/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "developer", "content": "Be brief."}, *HELLO], "temperature": 0.3,
        "top_p": 0.5, "stop": "zz", "seed": 4, "max_completion_tokens": 9, "presence_penalty": 0.5,
        "frequency_penalty": 0.25, "logit_bias": {"15": -100}, "user": "u", "some_future_field": {"x": 1}})
    request = last_request(loader)
    assert [m.role for m in request.messages] == ["system", "user"]  # developer is the system role
    s = request.sampling
    assert (s.temperature, s.top_p, s.stop, s.seed, s.num_predict) == (0.3, 0.5, ["zz"], 4, 9)
    assert (s.presence_penalty, s.frequency_penalty, s.logit_bias) == (0.5, 0.25, {15: -100.0})
    client.post("/v1/completions", json={"model": MODEL, "prompt": "abc"})
    assert last_request(loader).prompt == "abc" and last_request(loader).sampling.num_predict == 16  # OpenAI's default


def test_completions_whole_and_streamed_for_several_prompts(client: TestClient) -> None:
    whole = client.post("/v1/completions", json={"model": MODEL, "prompt": ["a b", "c d e"], "echo": True}).json()
    assert whole["object"] == "text_completion" and whole["id"].startswith("cmpl-")
    assert [(c["index"], c["text"], c["finish_reason"]) for c in whole["choices"]] == [
        (0, "a ba b", "stop"), (1, "c d ec d e", "stop")]  # echo: the prompt, then the reply
    assert whole["usage"]["completion_tokens"] == 5
    reply = client.post("/v1/completions", json={"model": MODEL, "prompt": ["a b", "c d e"], "max_tokens": 2,
                                                 "stream": True, "stream_options": {"include_usage": True}})
    *chunks, usage = sse(reply)
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4
    texts: dict[int, str] = {0: "", 1: ""}
    finishes = {}
    for chunk in chunks:
        [choice] = chunk["choices"]
        texts[choice["index"]] += choice["text"]
        if choice["finish_reason"]:
            finishes[choice["index"]] = choice["finish_reason"]
    assert texts == {0: "a b", 1: "c d "} and finishes == {0: "stop", 1: "length"}


def test_tool_calls_whole_and_streamed(client: TestClient) -> None:
    asked = [{"role": "user", "content": "what does get_weather say for Paris"}]
    named = client.post("/v1/chat/completions", json={"model": MODEL, "messages": asked, "tools": [WEATHER, ADD],
                                                      "tool_choice": {"type": "function", "function": {"name": "add"}}})
    choice = named.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "add", "arguments": "{}"}  # arguments a JSON string, unlike Ollama
    chunks = sse(client.post("/v1/chat/completions", json={"model": MODEL, "messages": asked,
                                                           "tools": [WEATHER, ADD], "stream": True}))
    calls = [d["tool_calls"][0] for c in chunks if "tool_calls" in (d := c["choices"][0]["delta"])]
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function" and calls[0]["function"]["name"] == "get_weather"
    assert all(c["index"] == 0 and "name" not in c["function"] for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    none = client.post("/v1/chat/completions", json={"model": MODEL, "messages": asked, "tools": [WEATHER],
                                                     "tool_choice": "none"}).json()
    assert none["choices"][0]["message"]["content"] == asked[0]["content"]
    assert none["choices"][0]["finish_reason"] == "stop"


def test_response_format_json_object_and_schema(client: TestClient, loader: FakeLoader) -> None:
    loose = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO,
                                                      "response_format": {"type": "json_object"}}).json()
    assert json.loads(loose["choices"][0]["message"]["content"]) == {"echo": "hello big world"}
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    strict = client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "response_format": {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}}).json()
    assert json.loads(strict["choices"][0]["message"]["content"]) == {"echo": "hello big world"}
    sent = last_request(loader).format
    assert sent is not None and sent.kind == "json_schema" and sent.schema_ == schema
    client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "response_format": {"type": "text"}})
    assert last_request(loader).format is None


def test_embeddings_as_floats_base64_and_cut(client: TestClient) -> None:
    floats = client.post("/v1/embeddings", json={"model": "smollm2", "input": ["first", "second text"]}).json()
    assert floats["object"] == "list" and floats["model"] == MODEL
    assert [(d["object"], d["index"]) for d in floats["data"]] == [("embedding", 0), ("embedding", 1)]
    assert floats["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vector = floats["data"][0]["embedding"]
    encoded = client.post("/v1/embeddings", json={"model": MODEL, "input": "first",
                                                  "encoding_format": "base64"}).json()
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(decoded, vector, strict=True)) < 1e-6
    short = client.post("/v1/embeddings", json={"model": MODEL, "input": "first", "dimensions": 3}).json()
    small = short["data"][0]["embedding"]
    assert len(small) == 3 and math.isclose(sum(v * v for v in small), 1)


def test_models_list_and_get(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and MODEL in [m["id"] for m in listed["data"]]
    one = client.get("/v1/models/smollm2")
    assert one.status_code == 200 and one.json()["id"] == MODEL and one.json()["object"] == "model"
