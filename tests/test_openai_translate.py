"""OpenAI wire <-> core translation, both directions, without a model. Reply objects are checked
against the official `openai` package's own response models."""

from __future__ import annotations

import base64
import json
import logging
import struct

import pytest
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deskml.api.errors import error_body
from deskml.api.openai import schemas as wire
from deskml.api.openai import translate as tr
from deskml.core import types as core
from deskml.core.errors import BadRequest

PNG = b"\x89PNG\r\n\x1a\nfake"
META = tr.ReplyMeta(id="chatcmpl-abc", created=1_700_000_000, model="smollm2:135m", fingerprint="fp_123")


def chat(**fields: object) -> core.ChatRequest:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], **fields}
    return tr.chat_request(wire.ChatCompletionRequest.model_validate(body))


# requests: wire -> core ------------------------------------------------------------------------
def test_chat_messages_roles_parts_and_tool_history() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    req = chat(messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "this?"},
                                     {"type": "image_url", "image_url": {"url": data_url}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "function", "name": "legacy", "content": "old style"},
    ])
    system, user, assistant, tool, function = req.messages
    assert (system.role, system.content) == ("system", "Be brief.")
    assert user.content == "What is\nthis?" and user.images == [PNG]
    assert assistant.content == "" and assistant.tool_calls == [core.ToolCall(id="call_1", name="look",
                                                                               arguments='{"x": 1}')]
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "call_1", "a cat")
    assert (function.role, function.name) == ("tool", "legacy")


def test_chat_sampling_fields() -> None:
    req = chat(temperature=0.2, top_p=0.5, seed=7, stop="END", presence_penalty=0.5, frequency_penalty=0.25,
               max_tokens=10, max_completion_tokens=20, logit_bias={"42": -100}, top_k=5,
               user="u1", metadata={"a": "b"}, store=False)
    o = req.options
    assert (o.temperature, o.top_p, o.seed, o.stop) == (0.2, 0.5, 7, ["END"])
    assert (o.presence_penalty, o.frequency_penalty, o.top_k) == (0.5, 0.25, 5)
    assert o.num_predict == 20  # max_completion_tokens wins over the deprecated max_tokens
    assert o.logit_bias == {42: -100.0}
    assert chat(max_tokens=10).options.num_predict == 10
    assert chat(stop=["a", "b"]).options.stop == ["a", "b"]
    assert chat().options.num_predict is None


def test_chat_response_formats() -> None:
    assert chat(response_format={"type": "text"}).format is None
    assert chat(response_format={"type": "json_object"}).format == core.ResponseFormat(kind="json")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = chat(response_format={"type": "json_schema",
                                "json_schema": {"name": "x", "strict": True, "schema": schema}}).format
    assert fmt is not None and fmt.kind == "json_schema" and fmt.schema_ == schema
    with pytest.raises(BadRequest) as err:
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}})
    assert err.value.param == "response_format" and "invalid JSON schema" in err.value.message
    with pytest.raises(BadRequest):
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(BadRequest):
        chat(response_format={"type": "yaml"})


def test_chat_tools_and_tool_choice() -> None:
    fn = {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {}}}
    req = chat(tools=[{"type": "function", "function": fn}], tool_choice="required", parallel_tool_calls=False)
    assert req.tools == [core.Tool(name="get_weather", description="d", parameters=fn["parameters"])]
    assert req.tool_choice == core.ToolChoice(mode="required") and req.parallel_tool_calls is False
    named = chat(tools=[{"type": "function", "function": fn}],
                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named.tool_choice == core.ToolChoice(mode="function", name="get_weather")
    assert chat().tool_choice.mode == "auto" and chat().parallel_tool_calls is True
    legacy = chat(functions=[fn], function_call={"name": "get_weather"})
    assert legacy.tools[0].name == "get_weather" and legacy.tool_choice.name == "get_weather"
    assert chat(tools=[{"type": "function", "function": {"name": "f"}}]).tools[0].parameters["type"] == "object"
    with pytest.raises(BadRequest):
        chat(tool_choice="sometimes")
    with pytest.raises(BadRequest):
        chat(tools=[{"type": "code_interpreter", "function": fn}])


@pytest.mark.parametrize("fields", [
    {"n": 2},
    {"messages": []},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "tool", "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
    {"logit_bias": {"abc": 1}},
    {"logprobs": True, "top_logprobs": 50},
    {"max_tokens": -1},
    {"max_completion_tokens": 0},
])
def test_chat_bad_input_is_bad_request(fields: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        chat(**fields)


def test_unknown_fields_are_accepted_and_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    req = wire.ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x", "weird": 1}], "reasoning_effort": "low"})
    assert req.model_extra == {"reasoning_effort": "low"}
    with caplog.at_level(logging.DEBUG, logger="deskml.api.openai"):
        assert tr.chat_request(req).messages[0].content == "x"
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "reasoning_effort" in logged and "weird" in logged


def test_completion_requests() -> None:
    reqs = tr.completion_requests(wire.CompletionRequest(model="m", prompt=["a", "b"], logprobs=3, echo=True))
    assert [r.prompt for r in reqs] == ["a", "b"] and all(r.raw for r in reqs)
    assert reqs[0].options.num_predict == tr.COMPLETIONS_DEFAULT_MAX_TOKENS == 16
    assert reqs[0].logprobs and reqs[0].top_logprobs == 3
    single = tr.completion_requests(wire.CompletionRequest(model="m", prompt="x", max_tokens=4, suffix="y"))
    assert len(single) == 1 and single[0].options.num_predict == 4 and single[0].suffix == "y"
    assert not single[0].logprobs
    for bad in ({"prompt": [1, 2, 3]}, {"prompt": [[1, 2]]}, {"prompt": []}, {"prompt": "x", "n": 3},
                {"prompt": "x", "best_of": 2}, {}):
        with pytest.raises(BadRequest):
            tr.completion_requests(wire.CompletionRequest.model_validate({"model": "m", **bad}))


def test_embed_request() -> None:
    req = tr.embed_request(wire.EmbeddingRequest(model="m", input="hello", dimensions=8))
    assert req.inputs == ["hello"] and req.dimensions == 8
    assert tr.embed_request(wire.EmbeddingRequest(model="m", input=["a", "b"])).inputs == ["a", "b"]
    for bad in ({"input": []}, {"input": ""}, {"input": [1, 2]}, {"input": "x", "encoding_format": "hex"},
                {"input": "x", "dimensions": 0}):
        with pytest.raises(BadRequest):
            tr.embed_request(wire.EmbeddingRequest.model_validate({"model": "m", **bad}))


# replies: core -> wire -------------------------------------------------------------------------
def done(reason: str = "stop", calls: list[core.ToolCall] | None = None) -> core.Done:
    timings = core.Timings(prompt_eval_count=7, cached_tokens=3, eval_count=5)
    return core.Done(reason=reason, timings=timings, tool_calls=calls or [], model="smollm2:135m")  # type: ignore[arg-type]


def test_chat_completion_object() -> None:
    logprob = core.TokenLogprob(token="Hi", logprob=-0.1, bytes=[72, 105], top=[("Hi", -0.1), ("Yo", -2.0)])
    result = core.GenerationResult(text="Hi", logprobs=[logprob], done=done("length"))
    body = tr.chat_completion(META, result, chat(logprobs=True, top_logprobs=1))
    parsed = ChatCompletion.model_validate(body)
    assert parsed.object == "chat.completion" and parsed.id == "chatcmpl-abc"
    choice = parsed.choices[0]
    assert choice.message.content == "Hi" and choice.finish_reason == "length"
    assert choice.logprobs and choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 1
    assert parsed.usage and (parsed.usage.prompt_tokens, parsed.usage.completion_tokens) == (10, 5)
    assert parsed.usage.total_tokens == 15
    assert tr.chat_completion(META, result, chat())["choices"][0]["logprobs"] is None


def test_chat_completion_with_tool_calls() -> None:
    call = core.ToolCall(id="call_9", name="get_weather", arguments='{"city": "Paris"}')
    body = tr.chat_completion(META, core.GenerationResult(done=done("tool_calls", [call]), tool_calls=[call]), chat())
    message = ChatCompletion.model_validate(body).choices[0].message
    assert message.content is None and message.tool_calls
    assert message.tool_calls[0].id == "call_9" and message.tool_calls[0].type == "function"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def assemble(chunks: list[dict]) -> dict:
    """What a client rebuilds from a chunk stream: content, tool calls by index, finish, usage."""
    content, calls, finish, usage = "", {}, None, None
    for raw in chunks:
        chunk = ChatCompletionChunk.model_validate(raw)
        usage = chunk.usage or usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return {"content": content, "calls": calls, "finish": finish, "usage": usage}


def test_chat_chunks_text_stream_with_usage() -> None:
    renderer = tr.ChatChunks(META, chat(), include_usage=True)
    chunks = [c for e in [core.TextDelta(text="Hel"), core.TextDelta(text="lo"), done()] for c in renderer.render(e)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == META.id for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 15
    assert all(c["usage"] is None for c in chunks[:-1])
    rebuilt = assemble(chunks)
    assert rebuilt["content"] == "Hello" and rebuilt["finish"] == "stop"
    plain = tr.ChatChunks(META, chat(), include_usage=False)
    assert all("usage" not in c for e in [core.TextDelta(text="x"), done()] for c in plain.render(e))


def test_chat_chunks_tool_call_deltas_assemble_into_the_call() -> None:
    call = core.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    events: list[core.Event] = [
        core.ToolCallDelta(index=0, id="call_1", name="get_weather", arguments=""),
        core.ToolCallDelta(index=0, arguments='{"city": '),
        core.ToolCallDelta(index=0, arguments='"Paris"}'),
        done("tool_calls", [call]),
    ]
    renderer = tr.ChatChunks(META, chat(), include_usage=False)
    chunks = [c for e in events for c in renderer.render(e)]
    first_call = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert first_call == {"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}
    assert "id" not in chunks[2]["choices"][0]["delta"]["tool_calls"][0]  # later deltas carry only arguments
    rebuilt = assemble(chunks)
    assert rebuilt["finish"] == "tool_calls"
    assert rebuilt["calls"] == {0: {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_completion_objects_and_logprobs() -> None:
    items = [core.TokenLogprob(token=" Paris", logprob=-0.2, top=[(" Paris", -0.2), (" the", -2.0)]),
             core.TokenLogprob(token=".", logprob=-0.4, top=[(".", -0.4)])]
    logprobs = tr.completion_logprobs(items, 1, offset=10)
    assert logprobs == {"tokens": [" Paris", "."], "token_logprobs": [-0.2, -0.4],
                        "top_logprobs": [{" Paris": -0.2}, {".": -0.4}], "text_offset": [10, 16]}
    choices = [tr.completion_choice(0, "a", done("length"), logprobs), tr.completion_choice(1, "b", done(), None)]
    body = tr.completion(META, choices, [done(), done()])
    parsed = Completion.model_validate(body)
    assert parsed.object == "text_completion" and [c.index for c in parsed.choices] == [0, 1]
    assert parsed.choices[0].finish_reason == "length" and parsed.usage and parsed.usage.total_tokens == 30
    # Streamed choices carry finish_reason null until their last chunk, as OpenAI sends them (the SDK
    # builds chunks without validation, so its stricter Literal does not apply to them).
    chunk = tr.completion_chunk(META, tr.completion_choice(1, "x", None, None))
    assert chunk["object"] == "text_completion" and chunk["id"] == META.id
    assert chunk["choices"] == [{"text": "x", "index": 1, "logprobs": None, "finish_reason": None}]


def test_embeddings_float_and_base64() -> None:
    result = core.EmbedResult(model="m", embeddings=[[0.5, -1.25], [1.0, 0.0]], prompt_tokens=4)
    floats = CreateEmbeddingResponse.model_validate(tr.embeddings(result, "float"))
    assert floats.data[1].embedding == [1.0, 0.0] and floats.usage.prompt_tokens == 4
    encoded = tr.embeddings(result, "base64")["data"][0]["embedding"]
    assert list(struct.unpack("<2f", base64.b64decode(encoded))) == [0.5, -1.25]


def test_model_object_and_error_body() -> None:
    model = Model.model_validate(tr.model_object("smollm2:135m", 1_700_000_000))
    assert model.id == "smollm2:135m" and model.object == "model" and model.owned_by == "library"
    body = error_body("openai", 404, "model 'x' not found", code="model_not_found", param="model")
    assert body == {"error": {"message": "model 'x' not found", "type": "invalid_request_error", "param": "model",
                              "code": "model_not_found"}}
