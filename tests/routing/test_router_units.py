"""Pure parts of the router: breaker states, rules and fallbacks, the routing file, plans, and the
translation of core requests and events to and from the OpenAI and Ollama wire formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskml.core.errors import BadRequest, LoopDetected, ModelNotFound
from deskml.core.hops import reset_via, set_via
from deskml.core.types import (
    ChatMessage,
    ChatRequest,
    GenerateRequest,
    ResponseFormat,
    SamplingOptions,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from deskml.engines import remote_wire as wire
from deskml.runtime.upstream.breaker import Breaker
from deskml.runtime.upstream.config import RoutingConfig, load_config
from deskml.runtime.upstream.router import Target, UpstreamRouter, task_types


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_probes_once_half_open() -> None:
    clock = Clock()
    breaker = Breaker(threshold=2, open_seconds=10, clock=clock)
    breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow() and breaker.state == "half_open"  # this caller is the probe
    assert not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == "open" and breaker.opened_count == 2
    breaker.healthy()  # a health check got through: probe at once
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.failures == 0


def _config(text: str, tmp_path: Path, suffix: str = ".toml") -> RoutingConfig:
    path = tmp_path / f"r{suffix}"
    path.write_text(text)
    return load_config(path)


def test_rules_match_task_length_and_model_glob(tmp_path: Path) -> None:
    text = ('[[rules]]\nmodel = "smollm2*"\ntask = ["tools", "vision"]\nto = "cloud/gpt-4o"\n'
            '[[rules]]\nmin_prompt_chars = 10\nto = ["big"]\n[fallback]\n"smollm2*" = "cloud/mini"\n')
    config = _config(text, tmp_path)
    tools, long_rule = config.rules
    assert tools.matches("smollm2:135m", {"chat", "tools"}, 0)
    assert not tools.matches("gemma3:270m", {"chat", "tools"}, 0)
    assert not tools.matches("smollm2", {"chat"}, 0)
    assert long_rule.matches("anything", {"generate"}, 10) and not long_rule.matches("x", {"chat"}, 9)
    assert config.fallbacks_for("SmolLM2:135m") == ["cloud/mini"] and config.fallbacks_for("other") == []


def test_yaml_file_and_clear_errors(tmp_path: Path) -> None:
    config = _config("upstreams:\n  - name: cloud\n    kind: openai\n    url: https://api.example.com/v1\n"
                     "    api_key_env: K\n    prefix: cloud/\n", tmp_path, ".yaml")
    assert config.upstreams[0].prefix == "cloud/" and config.router.strategy == "least_outstanding"
    with pytest.raises(BadRequest, match=r"upstreams.0.url: .*http://"):
        _config('[[upstreams]]\nname = "a"\nkind = "ollama"\nurl = "ftp://x"\n', tmp_path)
    with pytest.raises(BadRequest, match="unique"):
        _config('[[upstreams]]\nname = "a"\nkind = "ollama"\nurl = "http://x"\n' * 2, tmp_path)
    with pytest.raises(BadRequest, match="not valid TOML"):
        _config("[[upstreams]\n", tmp_path)
    with pytest.raises(BadRequest, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def _router(tmp_path: Path, text: str, local: set[str]) -> UpstreamRouter:
    router = UpstreamRouter(_config(text, tmp_path), "me", lambda name, _task: name.split(":")[0] in local)
    for upstream in router.upstreams.values():  # as a health check would have filled them
        from deskml.engines.remote import RemoteModel
        from deskml.runtime.upstream.config import model_key

        for name in upstream.config.models:
            shown = upstream.config.prefix + name
            upstream.models[model_key(shown)] = (shown, RemoteModel(name))
    return router


def test_plan_orders_local_upstreams_and_fallbacks(tmp_path: Path) -> None:
    text = ('[router]\nstrategy = "local_first"\n'
            '[[upstreams]]\nname = "n2"\nkind = "deskml"\nurl = "http://n2"\nmodels = ["smollm2:135m"]\n'
            '[[upstreams]]\nname = "cloud"\nkind = "openai"\nurl = "http://c"\nprefix = "cloud/"\nmodels = ["mini"]\n'
            '[fallback]\n"smollm2:135m" = ["cloud/mini"]\n')
    router = _router(tmp_path, text, {"smollm2"})
    request = ChatRequest(model="smollm2:135m", messages=[ChatMessage(role="user", content="hi")])
    assert router.plan("chat", request) == [Target("local", "smollm2:135m", "smollm2:135m"),
                                            Target("n2", "smollm2:135m", "smollm2:135m"),
                                            Target("cloud", "mini", "cloud/mini")]
    router.local_in_flight = 3
    router.config.router.strategy = "least_outstanding"
    assert router.plan("chat", request)[0].backend == "n2"  # fewer requests in flight than local
    router.upstreams["n2"].breaker.trip()
    assert [t.backend for t in router.plan("chat", request)] == ["local", "n2", "cloud"]  # open circuit last
    with pytest.raises(ModelNotFound):
        router.plan("chat", request.model_copy(update={"model": "nothing"}))
    with pytest.raises(BadRequest):
        router.plan("chat", request.model_copy(update={"model": "../etc"}))


def test_plan_refuses_to_send_a_request_back(tmp_path: Path) -> None:
    text = '[[upstreams]]\nname = "peer"\nkind = "deskml"\nurl = "http://p"\nmodels = ["loopy", "shared"]\n'
    router = _router(tmp_path, text, {"shared"})
    router.upstreams["peer"].engine.node_id = "peer-node"
    token = set_via(("peer-node",))
    try:
        with pytest.raises(LoopDetected, match="peer-node -> me"):
            router.plan("chat", ChatRequest(model="loopy", messages=[]))
        # a model this node has itself is served here instead of going back
        assert router.plan("chat", ChatRequest(model="shared", messages=[])) == [Target("local", "shared", "shared")]
    finally:
        reset_via(token)


def test_task_types_of_requests() -> None:
    chat = ChatRequest(model="m", messages=[ChatMessage(role="user", content="x", images=[b"png"])],
                       tools=[Tool(name="f")], format=ResponseFormat(kind="json"))
    assert task_types("chat", chat) == {"chat", "tools", "vision", "json"}
    assert task_types("generate", GenerateRequest(model="m", prompt="p")) == {"generate"}


def test_openai_bodies_and_stream_translation() -> None:
    request = ChatRequest(
        model="ignored", options=SamplingOptions(temperature=0.1, top_k=3, num_predict=20, stop=["\n"], seed=4),
        messages=[ChatMessage(role="user", content="hi", images=[b"\x89PNG"]),
                  ChatMessage(role="assistant", tool_calls=[ToolCall(id="c1", name="f", arguments='{"a":1}')]),
                  ChatMessage(role="tool", content="42", tool_call_id="c1", name="f")],
        format=ResponseFormat(kind="json_schema", schema={"type": "object"}))
    body = wire.openai_chat_body("gpt", request)
    assert body["model"] == "gpt" and body["max_tokens"] == 20 and body["seed"] == 4 and "top_k" not in body
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["messages"][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert body["messages"][2]["tool_call_id"] == "c1"
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    path, raw = wire.openai_generate_body("m", GenerateRequest(model="x", prompt="p", raw=True))
    assert path == "/v1/completions" and raw["prompt"] == "p"
    stream = wire.OpenAIStream("shown")
    events = [e for chunk in (
        {"choices": [{"delta": {"content": "Hel"}}]}, {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ) for e in stream.feed(chunk)]
    assert [type(e) for e in events] == [TextDelta, TextDelta, ToolCallDelta]
    done = stream.done()
    assert done.reason == "tool_calls" and done.tool_calls[0].name == "f" and done.model == "shown"
    assert done.timings.prompt_eval_count == 5 and done.timings.eval_count == 2


def test_ollama_bodies_and_stream_translation() -> None:
    request = ChatRequest(model="x", options=SamplingOptions(top_k=3), num_ctx=4096,
                          messages=[ChatMessage(role="user", content="hi", images=[b"img"])])
    body = wire.ollama_chat_body("llama3", request)
    assert body["options"] == {"top_k": 3, "num_ctx": 4096} and body["messages"][0]["images"] == ["aW1n"]
    reader = wire.OllamaStream("lan/llama3")
    events = reader.feed({"message": {"content": "a", "thinking": "t"}, "done": False})
    call = {"function": {"name": "g", "arguments": {"x": 1}}}
    events += reader.feed({"message": {"content": "", "tool_calls": [call]}, "done": False})
    events += reader.feed({"done": True, "done_reason": "stop", "eval_count": 9, "prompt_eval_count": 4})
    assert [e.kind for e in events] == ["thinking", "text", "tool_call"]
    done = reader.done()
    assert done.reason == "tool_calls" and json.loads(done.tool_calls[0].arguments) == {"x": 1}
    assert done.timings.eval_count == 9
    assert wire.error_message({"error": {"message": "boom"}}) == "boom" and wire.error_message({"ok": 1}) is None
