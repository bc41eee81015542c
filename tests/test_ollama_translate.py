"""Pure translation tests for the Ollama dialect and the pieces under it (no model, no HTTP)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from deskml.api.ollama import schemas as wire
from deskml.api.ollama import translate as tr
from deskml.core import types as core
from deskml.core.durations import parse_duration, parse_keep_alive
from deskml.core.errors import BadRequest, Busy
from deskml.engines.llama_cpp import request_body, sampling_body
from deskml.engines.openai_wire import ChunkTranslator
from deskml.runtime import modelfile, names
from deskml.runtime.gguf import read_gguf
from deskml.runtime.scheduler import PRIORITY_BATCH, SlotScheduler


def test_chat_request_to_core() -> None:
    req = wire.ChatRequest.model_validate({
        "model": "smollm2", "stream": False, "keep_alive": "5m", "format": "json",
        "options": {"temperature": 0.1, "num_ctx": 1024, "stop": "END", "num_gpu": 1},
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi", "images": [base64.b64encode(b"\x89PNG").decode()]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                    "parameters": {"type": "object"}}}],
    })
    out = tr.chat_request(req)
    assert out.model == "smollm2" and out.keep_alive == 300.0 and out.num_ctx == 1024
    assert out.options.temperature == 0.1 and out.options.stop == ["END"]
    assert out.format == core.ResponseFormat(kind="json")
    assert out.messages[1].images == [b"\x89PNG"]
    call = out.messages[2].tool_calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert out.messages[3].role == "tool" and out.messages[3].name == "get_weather"
    assert out.tools[0].name == "get_weather"


def test_generate_request_to_core_and_bad_values() -> None:
    out = tr.generate_request(wire.GenerateRequest(model="m", prompt="p", raw=True, system="s", keep_alive=-1))
    assert out.raw and out.system == "s" and out.keep_alive == -1.0
    with pytest.raises(BadRequest):
        tr.generate_request(wire.GenerateRequest(model="m", prompt="p", images=["%%%"]))
    with pytest.raises(BadRequest):
        tr.response_format("xml")
    with pytest.raises(BadRequest):
        tr.response_format({"type": 12})
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert tr.response_format(schema) == core.ResponseFormat(kind="json_schema", schema=schema)


def test_durations() -> None:
    assert parse_duration("5m") == 300 and parse_duration("1h30m") == 5400
    assert parse_duration("300ms") == 0.3 and parse_duration("-1") == -1 and parse_duration("-1m") == -60
    assert parse_keep_alive(0) == 0 and parse_keep_alive("10") == 10
    for bad in ("soon", "5x", "m5", ""):
        with pytest.raises(BadRequest):
            parse_duration(bad)
    with pytest.raises(BadRequest):
        parse_keep_alive(True)


def test_names() -> None:
    assert names.normalize("smollm2") == "smollm2:latest"
    assert names.normalize("SmolLM2:135m") == "smollm2:135m"
    assert names.normalize("hf.co/owner/repo:Q4_K_M") == "hf.co/owner/repo:Q4_K_M"
    assert names.normalize("localhost:5000/x/model") == "localhost:5000/x/model:latest"
    for bad in ("", "../x", "a/../b", "x:", ":tag", "a b"):
        with pytest.raises(BadRequest):
            names.normalize(bad)


def test_final_lines_and_timings() -> None:
    done = core.Done(reason="length", model="m", timings=core.Timings(
        total_ns=10, load_ns=1, prompt_eval_count=3, prompt_eval_ns=4, eval_count=5, eval_ns=6))
    final = tr.generate_final("m", done, "abc")
    assert final["done"] is True and final["done_reason"] == "length" and final["response"] == "abc"
    assert (final["total_duration"], final["load_duration"], final["prompt_eval_count"],
            final["prompt_eval_duration"], final["eval_count"], final["eval_duration"]) == (10, 1, 3, 4, 5, 6)
    chat = tr.chat_final("m", core.Done(reason="tool_calls", tool_calls=[
        core.ToolCall(id="c1", name="f", arguments='{"x": 1}')]))
    assert chat["done_reason"] == "stop"
    assert chat["message"]["tool_calls"][0]["function"] == {"index": 0, "name": "f", "arguments": {"x": 1}}
    chunk = tr.chat_chunk("m", core.TextDelta(text="hé"))
    assert chunk["message"] == {"role": "assistant", "content": "hé"} and chunk["done"] is False


def test_llama_chunks_to_events() -> None:
    translator = ChunkTranslator()
    events = []
    for chunk in [
        {"choices": [{"delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f",
                                                                                         "arguments": "{\"a\""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}],
         "timings": {"prompt_n": 7, "prompt_ms": 1.5, "cache_n": 3, "predicted_n": 2, "predicted_ms": 4.0}},
    ]:
        events.extend(translator.feed(chunk))
    texts = [e.text for e in events if isinstance(e, core.TextDelta)]
    assert texts == ["Hel", "lo"]
    done = translator.done("m")
    assert done.reason == "tool_calls" and done.tool_calls[0].arguments == '{"a": 1}'
    assert done.timings.prompt_eval_count == 7 and done.timings.cached_tokens == 3
    assert done.timings.prompt_eval_ns == 1_500_000 and done.timings.eval_ns == 4_000_000


def test_sampling_body_maps_ollama_names() -> None:
    body = sampling_body(core.SamplingOptions(temperature=0.5, num_predict=-1, num_keep=4, stop=["x"], seed=1))
    assert body == {"temperature": 0.5, "max_tokens": -1, "n_keep": 4, "stop": ["x"], "seed": 1}


def test_llama_request_body_for_chat_and_completion() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = core.EngineRequest(
        model="m", messages=[core.ChatMessage(role="user", content="hi")],
        sampling=core.SamplingOptions(repeat_last_n=-1, temperature=0.1),
        format=core.ResponseFormat(kind="json_schema", schema=schema), tools=[core.Tool(name="f")],
        parallel_tool_calls=False, logprobs=True)
    endpoint, body = request_body(chat, num_ctx=512)
    assert endpoint == "chat" and body["repeat_last_n"] == 512 and body["cache_prompt"] is True
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"schema": schema}}
    assert "json_schema" not in body and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["tools"][0]["function"]["name"] == "f" and body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False and body["n_probs"] == body["top_logprobs"] == 1
    completion = core.EngineRequest(model="m", prompt="raw text", format=core.ResponseFormat(kind="json"))
    endpoint, body = request_body(completion, num_ctx=512)
    assert endpoint == "completion" and body["prompt"] == "raw text" and body["json_schema"] == {"type": "object"}
    assert "response_format" not in body and "messages" not in body and "tools" not in body


def test_modelfile_parse_and_errors() -> None:
    parsed = modelfile.parse(
        'FROM ./model.gguf\nPARAMETER temperature 0.5\nPARAMETER stop "<|im_end|>"\nPARAMETER stop END\n'
        'SYSTEM """\nМногострочный\n"""\nMESSAGE user hi\nMESSAGE assistant "hello there"\n'
    )
    assert parsed.from_ == "./model.gguf"
    assert parsed.parameters == {"temperature": 0.5, "stop": ["<|im_end|>", "END"]}
    assert parsed.system == "\nМногострочный\n"
    assert parsed.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    for bad in ("PARAMETER temperature 1", "FROM x\nPARAMETER bogus 1", "FROM x\nPARAMETER top_k abc",
                "FROM x\nDANCE now", 'FROM x\nSYSTEM """never closed', "FROM x\nMESSAGE robot hi"):
        with pytest.raises(BadRequest):
            modelfile.parse(bad)


def test_gguf_reader(smollm2_gguf: Path) -> None:
    info = read_gguf(smollm2_gguf)
    assert info.architecture == "llama" and info.quantization == "Q4_1"
    assert info.context_length == 8192 and info.embedding_length == 576
    assert info.parameter_size == "134.52M"
    assert info.chat_template and "<|im_start|>" in info.chat_template


def test_scheduler_bounds_queue_and_orders_by_priority() -> None:
    async def scenario() -> None:
        sched = SlotScheduler(slots=1, max_queue=2)
        await sched.acquire()
        order: list[str] = []

        async def waiter(name: str, priority: int) -> None:
            await sched.acquire(priority)
            order.append(name)
            sched.release()

        batch = asyncio.create_task(waiter("batch", PRIORITY_BATCH))
        await asyncio.sleep(0)
        live = asyncio.create_task(waiter("live", 0))
        await asyncio.sleep(0)
        assert sched.queued == 2
        with pytest.raises(Busy):
            await sched.acquire()
        sched.release()
        await asyncio.gather(batch, live)
        assert order == ["live", "batch"]  # live traffic overtakes queued batch work
        assert sched.idle

        # a waiter that goes away frees its queue place and leaks nothing
        await sched.acquire()
        gone = asyncio.create_task(sched.acquire())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert sched.queued == 0
        sched.release()
        assert sched.idle and sched.running == 0

    asyncio.run(scenario())
