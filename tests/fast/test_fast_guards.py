"""The production layer around inference, on the fake engine: the response cache (a hit replays without
reaching the engine), keys and scopes on the inference routes, and the request and token budgets.
test_auth.py and production/test_ratelimit.py cover the admin routes and the listing routes; these
check that the same guards hold where a model answers, in each dialect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from deskml.core.principal import ALL_SCOPES
from deskml.services.auth import CredentialStore
from deskml.services.db import Database
from tests.fake_engine import FakeLoader
from tests.fast.conftest import MODEL, AppFactory, ndjson, sse, text_engine

_VOLATILE = {"created_at", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}]}


def _stable(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k not in _VOLATILE} for line in lines]


def test_identical_deterministic_requests_are_answered_from_the_cache(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader, cache=True)
    body = {"model": MODEL, "prompt": "red green blue", "options": {"temperature": 0}}
    fresh, again = client.post("/api/generate", json=body), client.post("/api/generate", json=body)
    assert (fresh.headers["x-deskml-cache"], again.headers["x-deskml-cache"]) == ("miss", "hit")
    assert again.headers["content-type"] == "application/x-ndjson"
    first, second = ndjson(fresh), ndjson(again)
    assert len(second) == 4 and _stable(first) == _stable(second)  # replayed token by token
    assert second[-1]["load_duration"] == 0
    assert len(text_engine(loader).requests) == 1  # the hit never reached the engine
    whole = client.post("/api/generate", json={**body, "stream": False})  # the same request, collected
    assert whole.headers["x-deskml-cache"] == "hit" and whole.json()["response"] == "red green blue"

    # any change is another entry: the prompt, an option, the system prompt
    for changed in ({**body, "prompt": "red green"}, {**body, "options": {"temperature": 0, "num_predict": 2}},
                    {**body, "system": "Be brief."}):
        assert client.post("/api/generate", json=changed).headers["x-deskml-cache"] == "miss", changed
    assert len(text_engine(loader).requests) == 4

    openai = {**CHAT, "temperature": 0, "stream": True}
    one, two = client.post("/v1/chat/completions", json=openai), client.post("/v1/chat/completions", json=openai)
    assert (one.headers["x-deskml-cache"], two.headers["x-deskml-cache"]) == ("miss", "hit")
    texts = ["".join(c["choices"][0]["delta"].get("content") or "" for c in sse(r)) for r in (one, two)]
    assert texts == ["one two three"] * 2 and len(text_engine(loader).requests) == 5


def test_sampled_or_opted_out_requests_bypass_the_cache(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader, cache=True)
    sampled = {**CHAT, "stream": False}  # Ollama's default temperature: not deterministic, never cached
    assert ["x-deskml-cache" in client.post("/api/chat", json=sampled).headers for _ in range(2)] == [False, False]
    body = {**sampled, "options": {"temperature": 0}}
    assert client.post("/api/chat", json=body).headers["x-deskml-cache"] == "miss"
    assert "x-deskml-cache" not in client.post("/api/chat", json=body, headers={"X-Deskml-Cache": "off"}).headers
    refresh = client.post("/api/chat", json=body, headers={"Cache-Control": "no-cache"})
    assert refresh.headers["x-deskml-cache"] == "miss"
    assert len(text_engine(loader).requests) == 5  # every request above reached the engine
    assert client.post("/api/chat", json=body).headers["x-deskml-cache"] == "hit"
    seeded = {**sampled, "options": {"seed": 42}}  # a fixed seed is deterministic too
    assert [client.post("/api/chat", json=seeded).headers["x-deskml-cache"] for _ in range(2)] == ["miss", "hit"]


def _keys(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    db = Database(url)
    db.migrate()
    try:
        store = CredentialStore(db)
        keys = {name: store.create_key(name, scopes)[1] for name, scopes in (
            ("app", frozenset({"inference"})), ("ops", frozenset({"models"})), ("admin", ALL_SCOPES))}
    finally:
        db.close()
    return url, keys


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_and_scopes_guard_the_inference_routes_in_each_dialect(fake_app: AppFactory, tmp_path: Path) -> None:
    url, keys = _keys(tmp_path)
    loader = FakeLoader()
    client = fake_app(loader=loader, auth="required", database_url=url, auth_cache_seconds=0)
    routes: list[tuple[str, dict[str, Any]]] = [
        ("/api/chat", {**CHAT, "stream": False}), ("/v1/chat/completions", CHAT),
        ("/v1/embeddings", {"model": MODEL, "input": "x"}), ("/api/llm/generate", {"prompt": "one two"})]
    for path, body in routes:
        missing = client.post(path, json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer"), path
        wrong = client.post(path, json=body, headers=_bearer(keys["ops"]))
        assert wrong.status_code == 403, path
        for refused in (missing.json(), wrong.json()):
            if path.startswith("/v1/"):
                assert set(refused["error"]) == {"message", "type", "param", "code"}
            elif path == "/api/llm/generate":
                assert refused["success"] is False and refused["error"]
            else:
                assert set(refused) == {"error"}
        assert "'inference' scope" in str(wrong.json())
    assert loader.engines == []  # nothing refused got as far as a model load

    assert client.post("/api/chat", json={**CHAT, "stream": False}, headers=_bearer(keys["app"])).json()[
        "message"]["content"] == "one two three"
    streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers={"X-API-Key": keys["app"]})
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in sse(streamed)) == "one two three"
    seed = client.post("/api/llm/generate", json={"prompt": "one two"}, headers=_bearer(keys["admin"]))
    assert seed.status_code == 200 and seed.json()["text"] == "one two"


def test_the_token_budget_counts_what_the_engine_generated(fake_app: AppFactory) -> None:
    client = fake_app(rate_limit_tokens_per_hour=5)
    first = client.post("/api/generate", json={"model": MODEL, "prompt": "a b c d e f g h", "stream": False})
    assert first.status_code == 200 and first.json()["eval_count"] == 8 and first.headers["x-ratelimit-limit"] == "5"
    refused = [client.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False}),
               client.post("/v1/chat/completions", json=CHAT),
               client.post("/api/llm/generate", json={"prompt": "x"})]
    for reply in refused:
        assert reply.status_code == 429 and reply.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(reply.headers["retry-after"]) <= 3600
    assert "generated tokens per hour" in refused[0].json()["error"]
    assert refused[1].json()["error"]["type"] == "rate_limit_error"
    assert refused[2].json()["success"] is False


def test_the_request_budget_covers_streams_too(fake_app: AppFactory) -> None:
    client: TestClient = fake_app(rate_limit_requests_per_minute=2)
    assert [client.post("/api/chat", json=CHAT).status_code for _ in range(2)] == [200, 200]
    over = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert over.status_code == 429 and over.headers["content-type"] == "application/json"  # no stream opened
    assert over.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(over.headers["retry-after"]) <= 60
