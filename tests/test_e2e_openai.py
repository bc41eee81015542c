"""End to end: a deskml server as a subprocess, driven by the official `openai` client (only the
base URL changed), plus the same structured-output and tool tests through the official `ollama` client."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import ollama
import openai
import pytest

from tests.conftest import MODEL, ServerProcess
from tests.test_tools_structured import ADD, PARAMS, PERSON, WEATHER, WEATHER_BOT, WEATHER_PARAMS

pytestmark = pytest.mark.e2e

DET: dict[str, Any] = {"temperature": 0, "max_tokens": 80}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def ollama_client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.url)


def valid_call(call: Any, allowed: set[str]) -> dict[str, Any]:
    assert call.type == "function" and call.id.startswith("call_") and call.function.name in allowed
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, PARAMS[call.function.name])
    return arguments


def test_chat_and_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Say hello."}],
                                           temperature=0, max_tokens=12)
    assert reply.model == MODEL and reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"} and reply.usage and reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Count to five."}],
                                            temperature=0, max_tokens=20, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and chunks[-1].usage and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in {"stop", "length"}


def test_completions(client: openai.OpenAI) -> None:
    done = client.completions.create(model="smollm2", prompt="The capital of France is", temperature=0, max_tokens=4,
                                     logprobs=2)
    assert "Paris" in done.choices[0].text and done.choices[0].logprobs
    assert done.choices[0].logprobs.tokens and done.usage and done.usage.completion_tokens == 4
    pieces = list(client.completions.create(model="smollm2", prompt=["Hello", "Bye"], temperature=0, max_tokens=3,
                                            stream=True))
    assert {c.choices[0].index for c in pieces} == {0, 1}


def test_embeddings(client: openai.OpenAI) -> None:
    # The client asks for base64 by default and decodes it itself.
    out = client.embeddings.create(model="smollm2", input=["first text", "second text"])
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 576
    floats = client.embeddings.create(model="smollm2", input="first text", encoding_format="float", dimensions=64)
    assert len(floats.data[0].embedding) == 64 and out.usage.prompt_tokens > 0
    assert out.data[0].embedding[:3] != out.data[1].embedding[:3]


def test_models(client: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve("smollm2").id == MODEL


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Describe a programmer as JSON."}], **DET,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}})
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), PERSON)


def test_tool_choice_required_and_named(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    required = client.chat.completions.create(model="smollm2", messages=question, tools=[WEATHER, ADD],
                                              tool_choice="required", **DET)
    assert required.choices[0].finish_reason == "tool_calls"
    (call,) = required.choices[0].message.tool_calls or []
    valid_call(call, {"get_weather", "add"})
    named = client.chat.completions.create(model="smollm2", messages=question, tools=[WEATHER, ADD],
                                           tool_choice={"type": "function", "function": {"name": "add"}}, **DET)
    (forced,) = named.choices[0].message.tool_calls or []
    assert set(valid_call(forced, {"add"})) == {"a", "b"}


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                            tools=[WEATHER], tool_choice="required", stream=True, **DET)
    name, arguments, finish = "", "", None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            name += (delta.function.name or "") if delta.function else ""
            arguments += (delta.function.arguments or "") if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER_PARAMS)


def test_tool_result_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="smollm2", messages=[{"role": "system", "content": WEATHER_BOT},
                                   {"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER], tool_choice="required", **DET)
    message = first.choices[0].message
    (call,) = message.tool_calls or []

    def answer(result: str) -> Any:
        history = [{"role": "user", "content": "What is the weather in Paris?"},
                   message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": result}]
        return client.chat.completions.create(model="smollm2", messages=history, tools=[WEATHER],
                                              tool_choice="none", **DET)

    short = answer("22 C")
    long = answer("Paris: 22 degrees Celsius, sunny, light wind from the west, humidity 40 percent")
    assert short.choices[0].message.content and not short.choices[0].message.tool_calls
    # The tool result reached the prompt: a longer result is that many more prompt tokens.
    assert short.usage and long.usage and long.usage.prompt_tokens >= short.usage.prompt_tokens + 10


def test_error_types(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], n=2)
    assert many.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": {"type": 12}}})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "missing"}})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"temperature": "hot"})


# the same through the official ollama client ----------------------------------------------------
def test_ollama_format_schema(ollama_client: ollama.Client) -> None:
    reply = ollama_client.chat(model="smollm2", messages=[{"role": "user", "content": "Describe a programmer."}],
                               format=PERSON, options={"temperature": 0, "num_predict": 80})
    jsonschema.validate(json.loads(reply.message.content or ""), PERSON)
    generated = ollama_client.generate(model="smollm2", prompt="Give a fruit as JSON with a name key.",
                                       format="json", options={"temperature": 0, "num_predict": 200})
    assert isinstance(json.loads(generated.response), dict | list)


def test_ollama_tools_and_round_trip(ollama_client: ollama.Client) -> None:
    messages: list[Any] = [{"role": "system", "content": WEATHER_BOT},
                           {"role": "user", "content": "What is the weather in Paris?"}]
    reply = ollama_client.chat(model="smollm2", messages=messages, tools=[WEATHER, ADD],
                               options={"temperature": 0, "num_predict": 80})
    (call,) = reply.message.tool_calls or []
    assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
    jsonschema.validate(dict(call.function.arguments), WEATHER_PARAMS)
    history = [messages[1], reply.message,
               {"role": "tool", "tool_name": "get_weather", "content": "Paris: 22 degrees Celsius, sunny"}]
    answer = ollama_client.chat(model="smollm2", messages=history, options={"temperature": 0, "num_predict": 60})
    assert "22" in (answer.message.content or "")
    with pytest.raises(ollama.ResponseError) as bad:
        ollama_client.chat(model="smollm2", messages=[{"role": "user", "content": "x"}], format={"type": "nope"})
    assert bad.value.status_code == 400
