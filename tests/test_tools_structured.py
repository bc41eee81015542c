"""Structured outputs and tool calling in both dialects.

Pure tests of the runtime pieces (the streaming JSON scanner, the tool plan, the constrained-reply
parser), then HTTP tests in process against the real SmolLM2-135M, whose chat template has no tool
support, plus copies of it with a tool-aware Jinja template and with an Ollama Go template.
Sampling is at temperature 0, so replies are deterministic.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from deskml.core import types as core
from deskml.core.errors import BadRequest
from deskml.runtime import tools
from deskml.runtime.json_stream import MemberScanner, StringDecoder

WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"},
                                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                  "required": ["city"]}
ADD_PARAMS = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
              "required": ["a", "b"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
                                            "parameters": WEATHER_PARAMS}}
ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": ADD_PARAMS}}
PARAMS = {"get_weather": WEATHER_PARAMS, "add": ADD_PARAMS}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                                           "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "age", "languages"], "additionalProperties": False}
OPENAI_DET = {"temperature": 0, "max_tokens": 80}
# Ollama has no tool_choice: with `auto` the model decides, and this instruction makes the 135M decide
# to call (checked repeatedly, also with the prompt cache warm).
WEATHER_BOT = "You are a weather bot. Use the get_weather tool for every question."
OLLAMA_DET = {"temperature": 0, "num_predict": 80}

# A Hermes-style template written for these tests: it renders `tools` and assistant `tool_calls`,
# so deskml treats a model using it as natively tool-capable.
TOOL_TEMPLATE = """{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}You may call functions. Signatures:
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools>
Call one as <tool_call>{"name": <name>, "arguments": <object>}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content or '' }}{% for call in message.tool_calls or [] %}<tool_call>{"name": "{{ call.function.name }}"}\
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

GO_TEMPLATE = """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


# pure: the streaming JSON scanner ---------------------------------------------------------------
@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_member_scanner_reports_each_value_whatever_the_split(step: int) -> None:
    text = '{\n "name" : "f\\"x", "arguments": {"s": "}{\\\\", "n": [1, {"a": null}]}, "k": -1.5e3 , "t":true}'
    scanner, raw, finished = MemberScanner(), {}, set()
    for i in range(0, len(text), step):
        for piece in scanner.feed(text[i : i + step]):
            raw[piece.key] = raw.get(piece.key, "") + piece.raw
            if piece.finished:
                finished.add(piece.key)
    assert {k: json.loads(v) for k, v in raw.items()} == json.loads(text)
    assert finished == {"name", "arguments", "k", "t"} and scanner.done


def test_string_decoder_handles_escapes_split_anywhere() -> None:
    value = 'Привет "q" \\ \n\t 😀 é'
    raw = json.dumps(value, ensure_ascii=True) + ', "next": 1'
    for step in (1, 2, 5):
        decoder = StringDecoder()
        assert "".join(decoder.feed(raw[i : i + step]) for i in range(0, len(raw), step)) == value


# pure: the plan ---------------------------------------------------------------------------------
def request(mode: str = "auto", name: str | None = None, fmt: core.ResponseFormat | None = None,
            messages: list[core.ChatMessage] | None = None) -> core.ChatRequest:
    return core.ChatRequest(
        model="m", messages=messages or [core.ChatMessage(role="user", content="hi")], format=fmt,
        tools=[core.Tool(name="get_weather", parameters=WEATHER_PARAMS), core.Tool(name="add", parameters=ADD_PARAMS)],
        tool_choice=core.ToolChoice(mode=mode, name=name),  # type: ignore[arg-type]
    )


def test_template_support_detection() -> None:
    assert tools.template_supports_tools(TOOL_TEMPLATE)
    assert not tools.template_supports_tools("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not tools.template_supports_tools(GO_TEMPLATE + "{{ .Tools }} tool_call")
    assert not tools.template_supports_tools(None)


def test_plan_modes() -> None:
    msgs = [core.ChatMessage(role="user", content="hi")]
    assert tools.plan(request("auto"), msgs, native=True).mode == "native"
    assert tools.plan(request("none"), msgs, native=True).mode == "off"
    assert tools.plan(request("none"), msgs, native=False).mode == "off"
    for native in (True, False):
        required = tools.plan(request("required"), msgs, native)
        assert required.mode == "constrained" and [t.name for t in required.tools] == ["get_weather", "add"]
    named = tools.plan(request("function", "add"), msgs, native=True)
    assert named.mode == "constrained" and [t.name for t in named.tools] == ["add"]
    auto = tools.plan(request("auto"), msgs, native=False)
    assert auto.mode == "constrained" and auto.messages[0].role == "system"
    assert "get_weather" in auto.messages[0].content
    with_format = tools.plan(request("auto", fmt=core.ResponseFormat(kind="json")), msgs, native=True)
    assert with_format.mode == "constrained" and with_format.content_is_json


def test_reply_schema_admits_calls_and_answers_only() -> None:
    offered = [core.Tool(name="get_weather", parameters=WEATHER_PARAMS), core.Tool(name="add", parameters=ADD_PARAMS)]
    required = tools.reply_schema(offered, None)
    auto = tools.reply_schema(offered, {"type": "string"})
    call = {"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}
    jsonschema.validate(call, required)
    jsonschema.validate(call, auto)
    jsonschema.validate({"content": "hello"}, auto)
    for bad, schema in [({"content": "hello"}, required),
                        ({"tool_calls": [{"name": "add", "arguments": {"a": "x", "b": 2}}]}, auto),
                        ({"tool_calls": [{"name": "nope", "arguments": {}}]}, auto),
                        ({"tool_calls": [call["tool_calls"][0], call["tool_calls"][0]]}, auto)]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize("mode,name,extra", [
    ("function", "missing", {}),
    ("required", None, {"tools": []}),
    ("auto", None, {"tools": [core.Tool(name="bad", parameters={"type": "nope"})]}),
    ("auto", None, {"tools": [core.Tool(name="f"), core.Tool(name="f")]}),
])
def test_plan_rejects_bad_tool_requests(mode: str, name: str | None, extra: dict[str, Any]) -> None:
    req = request(mode, name).model_copy(update=extra)
    with pytest.raises(BadRequest):
        tools.plan(req, req.messages, native=False)


def test_history_as_text_rewrites_calls_and_results() -> None:
    call = core.ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}')
    history = [
        core.ChatMessage(role="user", content="Weather?"),
        core.ChatMessage(role="assistant", content="", tool_calls=[call]),
        core.ChatMessage(role="tool", tool_call_id="c1", content="22 C"),
        core.ChatMessage(role="tool", name="add", content="5"),
        core.ChatMessage(role="user", content="Thanks, and?"),
    ]
    out = tools.history_as_text(history)
    assert [m.role for m in out] == ["user", "assistant", "user"]
    assert out[1].content == 'Calling get_weather({"city": "Paris"})' and not out[1].tool_calls
    assert out[2].content == "Tool result (get_weather): 22 C\n\nTool result (add): 5\n\nThanks, and?"


def feed_all(reply: tools.ConstrainedReply, text: str, step: int) -> list[core.Event]:
    return [e for i in range(0, len(text), step) for e in reply.feed(core.TextDelta(text=text[i : i + step]))]


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_constrained_reply_streams_a_call(step: int) -> None:
    text = '{"tool_calls": [ {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}} ]}'
    reply = tools.ConstrainedReply(content_is_json=False)
    events = feed_all(reply, text, step)
    assert all(isinstance(e, core.ToolCallDelta) for e in events)
    first = events[0]
    assert isinstance(first, core.ToolCallDelta) and first.name == "get_weather" and first.id == reply.call_id
    assert first.id and first.id.startswith("call_")
    arguments = "".join(e.arguments for e in events if isinstance(e, core.ToolCallDelta))
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    done = reply.finish(core.Done())
    assert done.reason == "tool_calls" and done.tool_calls[0].arguments == arguments


def test_constrained_reply_answer_and_truncation() -> None:
    reply = tools.ConstrainedReply(content_is_json=False)
    events = feed_all(reply, '{"content": "It is \\"sunny\\"."}', 3)
    assert "".join(e.text for e in events if isinstance(e, core.TextDelta)) == 'It is "sunny".'
    assert reply.finish(core.Done()).reason == "stop"
    as_json = tools.ConstrainedReply(content_is_json=True)
    text = "".join(e.text for e in feed_all(as_json, '{"content": {"a": [1, 2]}}', 2) if isinstance(e, core.TextDelta))
    assert json.loads(text) == {"a": [1, 2]}
    cut = tools.ConstrainedReply(content_is_json=False)
    feed_all(cut, '{"tool_calls": [{"name": "add", "arguments": {"a": 1', 5)
    done = cut.finish(core.Done(reason="length"))
    assert done.reason == "length" and done.tool_calls == []


# HTTP, in process, real model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def variants(app_client: TestClient) -> TestClient:
    """Copies of smollm2 with a tool-aware Jinja template and with an Ollama Go template."""
    for name, template in (("smol-tools", TOOL_TEMPLATE), ("smol-go", GO_TEMPLATE)):
        r = app_client.post("/api/create", json={"model": name, "from": "smollm2", "template": template,
                                                 "stream": False})
        assert r.status_code == 200, r.text
    return app_client


def openai_chat(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"model": "smollm2", **OPENAI_DET, **body})
    assert r.status_code == 200, r.text
    return r.json()


def assert_valid_call(call: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    assert name in allowed
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, PARAMS[name])
    return arguments


def test_openai_json_schema_reply_validates(app_client: TestClient) -> None:
    body = openai_chat(app_client, messages=[{"role": "user", "content": "Describe a programmer as JSON."}],
                       response_format={"type": "json_schema",
                                        "json_schema": {"name": "person", "strict": True, "schema": PERSON}})
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), PERSON)


def test_openai_json_object_and_streamed_schema(app_client: TestClient) -> None:
    body = openai_chat(app_client, messages=[{"role": "user", "content": "List three colors in JSON."}],
                       response_format={"type": "json_object"})
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)
    with app_client.stream("POST", "/v1/chat/completions", json={
        "model": "smollm2", **OPENAI_DET, "stream": True, "messages": [{"role": "user", "content": "A person?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
    }) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), PERSON)


def test_ollama_format_schema_and_json(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json={"model": "smollm2", "stream": False, "options": OLLAMA_DET,
                                           "format": PERSON,
                                           "messages": [{"role": "user", "content": "Describe a programmer."}]})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["message"]["content"]), PERSON)
    g = app_client.post("/api/generate", json={"model": "smollm2", "stream": False, "options": OLLAMA_DET,
                                               "format": "json", "prompt": "Three fruits as JSON."})
    assert g.status_code == 200 and isinstance(json.loads(g.json()["response"]), dict | list)


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                                                                                         "schema": {"type": 5}}}}),
    ("/api/chat", {"format": {"type": "object", "properties": {"a": {"type": "wrong"}}}, "stream": False}),
    ("/v1/chat/completions", {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}}),
    ("/v1/chat/completions", {"tool_choice": "required"}),
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}]}),
])
def test_bad_schemas_and_tool_choices_are_400(app_client: TestClient, path: str, body: dict[str, Any]) -> None:
    r = app_client.post(path, json={"model": "smollm2", "messages": [{"role": "user", "content": "x"}], **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    if path.startswith("/v1"):
        assert error["type"] == "invalid_request_error" and error["message"]
    else:
        assert isinstance(error, str) and "schema" in error


def test_openai_tool_choice_required_gives_a_valid_call(app_client: TestClient) -> None:
    body = openai_chat(app_client, tools=[WEATHER, ADD], tool_choice="required",
                       messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert_valid_call(call, {"get_weather", "add"})


def test_openai_named_tool_choice_forces_that_tool(app_client: TestClient) -> None:
    body = openai_chat(app_client, tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "add"}},
                       messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    (call,) = body["choices"][0]["message"]["tool_calls"]
    arguments = assert_valid_call(call, {"add"})
    assert set(arguments) == {"a", "b"}


def test_openai_auto_calls_or_answers(app_client: TestClient) -> None:
    weather = openai_chat(app_client, tools=[WEATHER, ADD], messages=[
        {"role": "system", "content": WEATHER_BOT},
        {"role": "user", "content": "What is the weather in Paris?"}])["choices"][0]
    assert weather["finish_reason"] == "tool_calls"
    assert assert_valid_call(weather["message"]["tool_calls"][0], {"get_weather"})["city"] == "Paris"
    # Whether a 135M model calls or answers is its own choice; either way the reply is well formed.
    chat = openai_chat(app_client, tools=[WEATHER, ADD],
                       messages=[{"role": "user", "content": "Hi! How are you?"}])["choices"][0]
    if chat["finish_reason"] == "tool_calls":
        assert_valid_call(chat["message"]["tool_calls"][0], {"get_weather", "add"})
    else:
        assert "tool_calls" not in chat["message"] and chat["message"]["content"].strip()
        assert not chat["message"]["content"].lstrip().startswith('{"content"')  # the JSON wrapper is gone
    none = openai_chat(app_client, tools=[WEATHER], tool_choice="none",
                       messages=[{"role": "user", "content": "What is the weather in Paris?"}])["choices"][0]
    assert "tool_calls" not in none["message"] and none["message"]["content"].strip()


def test_openai_streamed_tool_call_deltas(app_client: TestClient) -> None:
    with app_client.stream("POST", "/v1/chat/completions", json={
        "model": "smollm2", **OPENAI_DET, "stream": True, "tools": [WEATHER], "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
    }) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"]["name"] == "get_weather"
    assert len(deltas) > 2 and all("id" not in d for d in deltas[1:])
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_tool_result_round_trip(app_client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris: 22 degrees Celsius, sunny"},
    ]
    answer = openai_chat(app_client, tools=[WEATHER], tool_choice="none", messages=messages)["choices"][0]
    assert answer["finish_reason"] in {"stop", "length"} and "22" in answer["message"]["content"]
    again = openai_chat(app_client, tools=[WEATHER], messages=messages)["choices"][0]  # auto: a call or an answer
    if again["finish_reason"] == "tool_calls":
        assert_valid_call(again["message"]["tool_calls"][0], {"get_weather"})
    else:
        assert again["message"]["content"].strip()


def test_ollama_tools_give_object_arguments(app_client: TestClient) -> None:
    base = {"model": "smollm2", "options": OLLAMA_DET, "tools": [WEATHER, ADD],
            "messages": [{"role": "system", "content": WEATHER_BOT},
                         {"role": "user", "content": "What is the weather in Paris?"}]}
    r = app_client.post("/api/chat", json={**base, "stream": False})
    assert r.status_code == 200, r.text
    (call,) = r.json()["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["function"]["arguments"]["city"] == "Paris"
    with app_client.stream("POST", "/api/chat", json=base) as s:
        lines = [json.loads(line) for line in s.iter_lines() if line.strip()]
    calls = [c for line in lines for c in line["message"].get("tool_calls") or []]
    assert len(calls) == 1 and isinstance(calls[0]["function"]["arguments"], dict)
    assert lines[-1]["done"] is True


def test_ollama_tool_result_round_trip(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json={"model": "smollm2", "stream": False, "options": OLLAMA_DET, "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "Paris: 22 degrees Celsius, sunny"},
    ]})
    assert r.status_code == 200 and "22" in r.json()["message"]["content"]


def test_native_template_auto_goes_to_llama_cpp(variants: TestClient) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    plain = openai_chat(variants, model="smol-tools", messages=question, max_tokens=4)
    offered = openai_chat(variants, model="smol-tools", messages=question, tools=[WEATHER], max_tokens=4)
    # The template rendered the tool list into the prompt: llama.cpp got the tools itself.
    assert offered["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 20
    assert offered["choices"][0]["finish_reason"] in {"stop", "length", "tool_calls"}


def test_native_template_required_and_round_trip(variants: TestClient) -> None:
    body = openai_chat(variants, model="smol-tools", tools=[WEATHER, ADD], tool_choice="required",
                       messages=[{"role": "user", "content": "Add 2 and 3."}])
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert_valid_call(call, {"get_weather", "add"})
    messages = [{"role": "user", "content": "Add 2 and 3."}, body["choices"][0]["message"],
                {"role": "tool", "tool_call_id": call["id"], "content": "5"}]
    after = openai_chat(variants, model="smol-tools", tools=[ADD], tool_choice="none", messages=messages)
    assert after["choices"][0]["message"]["content"] is not None


def test_go_template_model_tool_call(variants: TestClient) -> None:
    body = openai_chat(variants, model="smol-go", tools=[WEATHER], tool_choice="required",
                       messages=[{"role": "user", "content": "Weather in Rome?"}])
    (call,) = body["choices"][0]["message"]["tool_calls"]
    assert_valid_call(call, {"get_weather"})
    fmt = openai_chat(variants, model="smol-go", messages=[{"role": "user", "content": "A person."}],
                      response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
    jsonschema.validate(json.loads(fmt["choices"][0]["message"]["content"]), PERSON)
