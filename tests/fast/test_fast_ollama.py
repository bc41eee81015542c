"""The Ollama dialect over HTTP on the fake engine: NDJSON framing and the fields of each line, stream
and stream:false agreeing, options and formats reaching the engine, tool calls in Ollama's shape, and
embeddings. The fake echoes the user's words one event per word, so every token is predictable."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.testclient import TestClient

from tests.fake_engine import FakeLoader
from tests.fast.conftest import MODEL, last_request, ndjson

DURATIONS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
             "eval_duration")
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}}}}


def _final_fields(line: dict[str, Any], words: int) -> None:
    assert line["done"] is True and line["model"] == MODEL
    assert all(isinstance(line[key], int) and line[key] >= 0 for key in DURATIONS), line
    assert line["eval_count"] == words and line["prompt_eval_count"] > 0
    assert line["total_duration"] >= line["eval_duration"]


def test_generate_streams_one_line_per_token_then_a_done_line(client: TestClient) -> None:
    reply = client.post("/api/generate", json={"model": "smollm2", "prompt": "red green blue"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-ndjson"
    *tokens, final = ndjson(reply)
    assert [line["response"] for line in tokens] == ["red ", "green ", "blue"]
    assert all(set(line) == {"model", "created_at", "response", "done"} and line["done"] is False for line in tokens)
    assert all(line["created_at"].endswith("Z") and "T" in line["created_at"] for line in tokens)
    assert final["response"] == "" and final["done_reason"] == "stop"
    _final_fields(final, 3)


def test_generate_stream_false_is_the_stream_folded_into_one_object(client: TestClient) -> None:
    body = {"model": MODEL, "prompt": "red green blue", "stream": False}
    reply = client.post("/api/generate", json=body)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    whole = reply.json()
    assert whole["response"] == "red green blue" and whole["done_reason"] == "stop"
    _final_fields(whole, 3)
    streamed = ndjson(client.post("/api/generate", json={**body, "stream": True}))
    assert "".join(line["response"] for line in streamed) == whole["response"]
    cut = client.post("/api/generate", json={**body, "options": {"num_predict": 2}}).json()
    assert cut["response"] == "red green " and cut["done_reason"] == "length" and cut["eval_count"] == 2


def test_chat_lines_carry_the_assistant_message(client: TestClient) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Привет, мир! 😀"}]
    reply = client.post("/api/chat", json={"model": MODEL, "messages": messages})
    *tokens, final = ndjson(reply)
    assert "\\u" not in reply.text  # UTF-8 on the wire, not JSON escapes
    assert [line["message"] for line in tokens] == [{"role": "assistant", "content": "Привет, "},
                                                    {"role": "assistant", "content": "мир! "},
                                                    {"role": "assistant", "content": "😀"}]
    assert final["message"] == {"role": "assistant", "content": ""} and final["done_reason"] == "stop"
    _final_fields(final, 3)
    whole = client.post("/api/chat", json={"model": MODEL, "messages": messages, "stream": False}).json()
    assert whole["message"] == {"role": "assistant", "content": "Привет, мир! 😀"}
    _final_fields(whole, 3)


def test_options_and_modelfile_defaults_reach_the_engine_resolved(client: TestClient, loader: FakeLoader) -> None:
    options = {"temperature": 0.2, "top_k": 7, "top_p": 0.5, "stop": ["zz"], "seed": 3, "num_predict": 9,
               "repeat_penalty": 1.3, "num_gpu": 99, "made_up": 1}  # unknown options are ignored, as Ollama does
    reply = client.post("/api/chat", json={"model": MODEL, "stream": False, "options": options, "surprise": True,
                                           "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200
    sampling = last_request(loader).sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.stop, sampling.seed) == (
        0.2, 7, 0.5, ["zz"], 3)
    assert (sampling.num_predict, sampling.repeat_penalty) == (9, 1.3)
    assert sampling.min_p == 0.0 and sampling.repeat_last_n == 64  # Ollama's defaults fill the rest
    client.post("/api/generate", json={"model": MODEL, "prompt": "abc", "system": "You are terse.", "stream": False})
    request = last_request(loader)
    assert request.prompt is None  # templated: the chat template renders the system and user messages
    assert [(m.role, m.content) for m in request.messages] == [("system", "You are terse."), ("user", "abc")]
    client.post("/api/generate", json={"model": MODEL, "prompt": "abc", "raw": True, "stream": False})
    raw = last_request(loader)
    assert raw.prompt == "abc" and raw.messages == []


def test_format_json_and_schema_constrain_the_engine(client: TestClient, loader: FakeLoader) -> None:
    shaped = client.post("/api/generate", json={"model": MODEL, "prompt": "a b", "format": "json", "stream": False})
    assert json.loads(shaped.json()["response"]) == {"echo": "a b"}
    sent = last_request(loader).format
    assert sent is not None and sent.kind == "json"
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    lines = ndjson(client.post("/api/chat", json={"model": MODEL, "format": schema,
                                                   "messages": [{"role": "user", "content": "x y"}]}))
    assert json.loads("".join(line["message"]["content"] for line in lines)) == {"echo": "x y"}
    sent = last_request(loader).format
    assert sent is not None and sent.kind == "json_schema" and sent.schema_ == schema


def test_tool_calls_come_back_in_ollama_shape(client: TestClient, loader: FakeLoader) -> None:
    asked = [{"role": "user", "content": "call get_weather for Paris"}]
    whole = client.post("/api/chat", json={"model": MODEL, "messages": asked, "tools": [ADD, WEATHER],
                                           "stream": False}).json()
    message = whole["message"]
    assert message["role"] == "assistant" and message["content"] == ""
    [call] = message["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {}}  # arguments an object
    assert call["id"].startswith("call_") and whole["done"] is True
    *calls, final = ndjson(client.post("/api/chat", json={"model": MODEL, "messages": asked, "tools": [ADD, WEATHER]}))
    assert [c["message"]["tool_calls"][0]["function"]["name"] for c in calls if c["message"].get("tool_calls")] == [
        "get_weather"]
    assert final["done"] is True and "tool_calls" not in final["message"]
    # a reply that names no tool is a plain answer
    plain = client.post("/api/chat", json={"model": MODEL, "tools": [ADD, WEATHER], "stream": False,
                                           "messages": [{"role": "user", "content": "hello"}]}).json()
    assert plain["message"] == {"role": "assistant", "content": "hello"}
    # The model's template knows no tools, so deskml writes the call and its result into the history.
    called = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    follow = [*asked, {"role": "assistant", "content": "", "tool_calls": [called]},
              {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    reply = client.post("/api/chat", json={"model": MODEL, "messages": follow, "tools": [WEATHER], "stream": False})
    assert reply.status_code == 200, reply.text
    rendered = [(m.role, m.content) for m in last_request(loader).messages]
    assert rendered[0][0] == "system" and '"name": "get_weather"' in rendered[0][1]
    assert rendered[1:] == [("user", "call get_weather for Paris"),
                            ("assistant", 'Calling get_weather({"city": "Paris"})'),
                            ("user", "Tool result (get_weather): sunny")]


def test_embed_and_legacy_embeddings(client: TestClient) -> None:
    many = client.post("/api/embed", json={"model": "smollm2", "input": ["the cat", "Кошка"]}).json()
    assert set(many) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    assert many["model"] == MODEL and many["prompt_eval_count"] == 3
    first, second = many["embeddings"]
    assert len(first) == 8 and first != second and math.isclose(sum(v * v for v in first), 1)
    one = client.post("/api/embed", json={"model": MODEL, "input": "the cat"}).json()
    assert one["embeddings"] == [first]
    short = client.post("/api/embed", json={"model": MODEL, "input": "the cat", "dimensions": 4}).json()
    [vector] = short["embeddings"]
    assert len(vector) == 4 and math.isclose(sum(v * v for v in vector), 1)  # cut, then normalised again
    legacy = client.post("/api/embeddings", json={"model": MODEL, "prompt": "the cat"}).json()
    assert legacy == {"embedding": first}
    assert client.post("/api/embeddings", json={"model": MODEL, "prompt": ""}).json() == {"embedding": []}


def test_the_seed_api_collects_a_generation(client: TestClient, loader: FakeLoader) -> None:
    reply = client.post("/api/llm/generate", json={"prompt": "one two three", "max_length": 2, "temperature": 0})
    assert reply.status_code == 200
    assert reply.json() == {"success": True, "text": "one two ", "model": MODEL, "time": reply.json()["time"]}
    sampling = last_request(loader).sampling
    assert sampling.num_predict == 2 and sampling.temperature == 0
