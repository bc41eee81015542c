"""The router in process: upstream models listed, streams translated between dialects, failover before
the first byte, an error event after it, the circuit breaker, policies and balancing."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.routing.conftest import backend_status, cloud_block, wait_for
from tests.routing.fakes import FakeCloud, FakeOllama


def ndjson(client: TestClient, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        return [json.loads(line) for line in response.iter_lines() if line.strip()]


def sse(client: TestClient, path: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        out: list[Any] = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
        return out


def test_upstream_models_are_listed_under_their_prefix(routed_app: Any, cloud: FakeCloud,
                                                       lan_ollama: FakeOllama) -> None:
    toml = cloud_block(cloud) + f'[[upstreams]]\nname = "lan"\nkind = "ollama"\nurl = "{lan_ollama.url}"\n'
    with routed_app(toml) as client:
        tags = {m["name"]: m for m in client.get("/api/tags").json()["models"]}
        assert {"cloud/gpt-4o-mini", "cloud/text-embedding-3-small", "llama3:8b", "smollm2:135m"} <= set(tags)
        assert tags["cloud/gpt-4o-mini"]["details"]["format"] == "upstream:cloud"
        assert tags["llama3:8b"]["details"]["parameter_size"] == "1M"
        models = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert {"cloud/gpt-4o-mini", "llama3:8b"} <= models
        # /api/show answers for every listed model, upstream-only ones too
        shown = client.post("/api/show", json={"model": "llama3:8b"})
        assert shown.status_code == 200, shown.text
        assert shown.json()["details"]["format"] == "upstream:lan" and shown.json()["details"]["parameter_size"] == "1M"
        assert shown.json()["model_info"]["deskml.upstream"] == "lan"
        assert client.post("/api/show", json={"model": "cloud/gpt-4o-mini"}).json()["capabilities"] == ["completion"]
        assert client.post("/api/show", json={"model": "cloud/nope"}).status_code == 404
        status = client.get("/api/admin/upstreams").json()
        assert status["routing"] is True
        assert {b["name"]: b["up"] for b in status["backends"] if b["name"] != "local"} == {"cloud": True, "lan": True}


def test_ollama_client_streams_from_an_openai_upstream(routed_app: Any, cloud: FakeCloud) -> None:
    with routed_app(cloud_block(cloud)) as client:
        lines = ndjson(client, "/api/chat", {"model": "cloud/gpt-4o-mini", "stream": True,
                                             "messages": [{"role": "user", "content": "hello there"}],
                                             "options": {"temperature": 0.2, "num_predict": 50, "top_k": 5}})
        assert "".join(line["message"]["content"] for line in lines) == "cloud says: hello there"
        assert [line["done"] for line in lines][-1] is True and not any(line["done"] for line in lines[:-1])
        final = lines[-1]
        assert final["done_reason"] == "stop" and final["prompt_eval_count"] == 7 and final["eval_count"] == 3
        sent = cloud.calls[-1]["body"]
        assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
        assert sent["temperature"] == 0.2 and sent["max_tokens"] == 50
        assert "top_k" not in sent  # llama.cpp-only knobs are not sent to OpenAI-style servers
        assert cloud.calls[-1]["headers"]["authorization"] == "Bearer sk-test-good"
        # /api/generate becomes a chat upstream, and a non-streaming reply is the same stream collected
        reply = client.post("/api/generate", json={"model": "cloud/gpt-4o-mini", "prompt": "why", "stream": False})
        assert reply.status_code == 200 and reply.json()["response"] == "cloud says: why"


def test_openai_client_streams_from_an_ollama_upstream(routed_app: Any, lan_ollama: FakeOllama) -> None:
    toml = f'[[upstreams]]\nname = "lan"\nkind = "ollama"\nurl = "{lan_ollama.url}"\nprefix = "lan/"\n'
    with routed_app(toml) as client:
        events = sse(client, "/v1/chat/completions", {
            "model": "lan/llama3:8b", "stream": True, "messages": [{"role": "user", "content": "bonjour"}]})
        assert events[-1] == "[DONE]"
        text = "".join((e["choices"][0]["delta"].get("content") or "") for e in events[:-1] if e.get("choices"))
        assert text == "ollama says: bonjour"
        assert lan_ollama.calls[-1]["path"] == "/api/chat" and lan_ollama.calls[-1]["body"]["model"] == "llama3:8b"
        reply = client.post("/v1/chat/completions", json={
            "model": "lan/llama3:8b", "messages": [{"role": "user", "content": "salut"}]})
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "ollama says: salut"


def test_failure_before_the_first_byte_is_invisible(routed_app: Any, cloud: FakeCloud) -> None:
    broken = FakeCloud("broken", key=None, models=["gpt-4o-mini"], mode="error500").start()
    try:
        toml = (f'[router]\nstrategy = "local_first"\n'
                f'[[upstreams]]\nname = "broken"\nkind = "openai"\nurl = "{broken.url}"\n'
                f'[[upstreams]]\nname = "dead"\nkind = "openai"\nurl = "http://127.0.0.1:9"\nmodels = ["gpt-4o-mini"]\n'
                + cloud_block(cloud, prefix=""))
        with routed_app(toml) as client:
            lines = ndjson(client, "/api/chat", {"model": "gpt-4o-mini",
                                                 "messages": [{"role": "user", "content": "ping"}]})
            assert "".join(line["message"]["content"] for line in lines) == "cloud says: ping"
            assert not any("error" in line for line in lines)
            assert len(broken.calls) == 1  # tried first, failed with 500, the client never saw it
            assert backend_status(client, "dead")["up"] is False
    finally:
        broken.stop()


def test_failure_mid_stream_ends_with_an_error_event(routed_app: Any, cloud: FakeCloud) -> None:
    cloud.mode = "drop"
    with routed_app(cloud_block(cloud)) as client:
        started = time.monotonic()
        lines = ndjson(client, "/api/chat", {"model": "cloud/gpt-4o-mini",
                                             "messages": [{"role": "user", "content": "tell me"}]})
        assert [line["message"]["content"] for line in lines[:-1]] == ["cloud ", "says: "]
        assert "upstream 'cloud' failed mid-reply" in lines[-1]["error"]
        events = sse(client, "/v1/chat/completions", {"model": "cloud/gpt-4o-mini", "stream": True,
                                                      "messages": [{"role": "user", "content": "again"}]})
        assert "error" in events[-1] and "mid-reply" in events[-1]["error"]["message"]
        assert time.monotonic() - started < 10
        assert client.get("/api/history", params={"model": "cloud/gpt-4o-mini"}).status_code == 200


def test_open_circuit_fallback_and_half_open_probe(routed_app: Any, cloud: FakeCloud) -> None:
    primary = FakeOllama("primary", models=["m1"]).start()
    port = primary.port
    toml = (f'[router]\nhealth_interval = 0.2\nopen_seconds = 60\nfailure_threshold = 1\n'
            f'[[upstreams]]\nname = "primary"\nkind = "ollama"\nurl = "{primary.url}"\n'
            + cloud_block(cloud) + '[fallback]\n"m1" = ["cloud/gpt-4o-mini"]\n')
    try:
        with routed_app(toml) as client:
            body = {"model": "m1", "stream": False, "messages": [{"role": "user", "content": "q"}]}
            assert client.post("/api/chat", json=body).json()["message"]["content"] == "primary says: q"
            primary.stop()
            reply = client.post("/api/chat", json=body)
            assert reply.status_code == 200 and reply.json()["message"]["content"] == "cloud says: q"
            assert backend_status(client, "primary")["circuit"] == "open"
            calls_before = len(primary.calls)
            assert client.post("/api/chat", json=body).json()["message"]["content"] == "cloud says: q"
            primary = FakeOllama("primary", models=["m1"], port=port).start()
            # the health check sees it back and lets one request probe it (half-open) ...
            wait_for(lambda: backend_status(client, "primary")["circuit"] == "half_open", what="half-open")
            assert client.post("/api/chat", json=body).json()["message"]["content"] == "primary says: q"
            # ... which closes the circuit again
            assert backend_status(client, "primary")["circuit"] == "closed"
            assert len(primary.calls) == 1 and calls_before >= 1
            metrics = client.get("/metrics").text
            assert 'deskml_upstream_requests_total{outcome="ok",upstream="cloud"} 2.0' in metrics
            assert 'deskml_upstream_requests_total{outcome="ok",upstream="primary"} 2.0' in metrics
            assert 'deskml_upstream_up{kind="ollama",upstream="primary"} 1.0' in metrics
            assert 'deskml_upstream_circuit_state{upstream="primary"} 0.0' in metrics
    finally:
        primary.stop()


def test_task_type_rule_sends_tool_calls_to_the_cloud(routed_app: Any, cloud: FakeCloud) -> None:
    toml = cloud_block(cloud) + '[[rules]]\ntask = "tools"\nto = "cloud/gpt-4o-mini"\n'
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                             "parameters": parameters}}
    with routed_app(toml) as client:
        reply = client.post("/api/chat", json={"model": "smollm2", "stream": False, "tools": [tool],
                                               "messages": [{"role": "user", "content": "Weather in Paris?"}]})
        assert reply.status_code == 200, reply.text
        message = reply.json()["message"]
        function = message["tool_calls"][0]["function"]
        assert (function["name"], function["arguments"]) == ("get_weather", {"city": "Paris"})
        assert cloud.calls[-1]["body"]["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.slow  # the real model
def test_prompt_length_rule_routes_long_prompts_away(routed_app: Any, cloud: FakeCloud) -> None:
    toml = cloud_block(cloud) + '[[rules]]\nmodel = "smollm2*"\nmin_prompt_chars = 200\nto = ["cloud/gpt-4o-mini"]\n'
    with routed_app(toml) as client:
        short = client.post("/api/generate", json={"model": "smollm2", "prompt": "Say hi.", "stream": False,
                                                   "options": {"num_predict": 4, "temperature": 0}})
        assert short.status_code == 200 and short.json()["model"] == "smollm2:135m"
        assert not short.json()["response"].startswith("cloud says")
        assert cloud.calls == []
        long_prompt = "Summarise this. " + "word " * 60
        routed = client.post("/api/generate", json={"model": "smollm2", "prompt": long_prompt, "stream": False})
        assert routed.json()["response"] == "cloud says: " + long_prompt[:40]
        assert routed.json()["model"] == "cloud/gpt-4o-mini"
        wait_for(lambda: len(client.get("/api/history").json()["items"]) >= 2, what="history written")
        backends = {i["model"]: i["backend"] for i in client.get("/api/history").json()["items"]}
        assert backends["cloud/gpt-4o-mini"] == "upstream:cloud" and backends["smollm2:135m"] == "llama.cpp"


def test_embeddings_route_to_an_upstream(routed_app: Any, cloud: FakeCloud) -> None:
    with routed_app(cloud_block(cloud)) as client:
        reply = client.post("/api/embed", json={"model": "cloud/text-embedding-3-small", "input": ["ab", "abcd"]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["embeddings"] == [[2.0, 1.0, 0.5], [4.0, 1.0, 0.5]]


def test_least_outstanding_spreads_concurrent_requests(routed_app: Any) -> None:
    one = FakeOllama("one", models=["shared"], mode="slow").start()
    two = FakeOllama("two", models=["shared"], mode="slow").start()
    toml = "".join(f'[[upstreams]]\nname = "{s.label}"\nkind = "ollama"\nurl = "{s.url}"\n' for s in (one, two))
    try:
        with routed_app(toml) as client:
            results: list[str] = []

            def ask() -> None:
                reply = client.post("/api/chat", json={"model": "shared", "stream": False,
                                                       "messages": [{"role": "user", "content": "x"}]})
                results.append(reply.json()["message"]["content"])

            threads = [threading.Thread(target=ask) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert sorted(results) == ["one says: x"] * 3 + ["two says: x"] * 3
            assert len(one.calls) == 3 and len(two.calls) == 3
    finally:
        one.stop()
        two.stop()


def test_unknown_model_and_bad_file(routed_app: Any, cloud: FakeCloud, tmp_path: Any) -> None:
    with routed_app(cloud_block(cloud)) as client:
        reply = client.post("/api/chat", json={"model": "nowhere", "messages": [{"role": "user", "content": "x"}]})
        assert reply.status_code == 404 and "not found" in reply.json()["error"]
    import pytest

    from deskml.core.errors import BadRequest

    with pytest.raises(BadRequest, match="kind"), routed_app('[[upstreams]]\nname = "x"\nkind = "grpc"\nurl = "http://a"\n'):
        pass
