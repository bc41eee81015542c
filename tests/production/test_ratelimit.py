"""Rate limits: 429 in each dialect's shape with Retry-After and X-RateLimit-*, per caller budgets,
the generated-token budget, prompt-size limits; memory and Redis storage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from deskml.app import create_app
from deskml.core.principal import ALL_SCOPES, Principal
from deskml.services.ratelimit import Budget, RateLimiter
from tests.conftest import MODEL, make_settings, services_of


def _app(tmp_path: Path, storage: str | None, **overrides: object):
    settings = make_settings(tmp_path, auth="off", redis_url=storage, **overrides)
    return create_app(settings)


def test_over_limit_is_429_in_every_dialect(tmp_path: Path, storage: str | None) -> None:
    with TestClient(_app(tmp_path, storage, rate_limit_requests_per_minute=2)) as client:
        first = client.get("/api/tags")
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "2" and first.headers["x-ratelimit-remaining"] == "1"
        assert 0 < int(first.headers["x-ratelimit-reset"]) <= 60
        assert client.get("/api/tags").status_code == 200

        ollama = client.get("/api/tags")
        openai = client.get("/v1/models")
        backend = client.post("/api/llm/generate", json={"prompt": "hi"})
        for response in (ollama, openai, backend):
            assert response.status_code == 429
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert response.headers["x-ratelimit-limit"] == "2"
            assert response.headers["x-ratelimit-remaining"] == "0"
            assert response.headers["x-request-id"]
        assert set(ollama.json()) == {"error"} and "requests per minute" in ollama.json()["error"]
        error = openai.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert "requests per minute" in error["message"]
        assert backend.json()["success"] is False and "requests per minute" in backend.json()["error"]
        # liveness stays reachable
        assert client.get("/api/version").status_code == 200
        assert client.get("/").status_code == 200


def test_hour_limit_and_unlimited_default(tmp_path: Path, storage: str | None) -> None:
    with TestClient(_app(tmp_path / "a", storage, rate_limit_requests_per_hour=3)) as client:
        statuses = [client.get("/api/tags").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert "requests per hour" in client.get("/api/tags").json()["error"]
    with TestClient(_app(tmp_path / "b", None)) as client:  # no limits configured: no headers, no refusals
        responses = [client.get("/api/tags") for _ in range(20)]
        assert {r.status_code for r in responses} == {200}
        assert "x-ratelimit-limit" not in responses[-1].headers


@pytest.mark.slow  # the real model
def test_generated_token_budget(tmp_path: Path, storage: str | None) -> None:
    with TestClient(_app(tmp_path, storage, rate_limit_tokens_per_hour=5, cache=False)) as client:
        body = {"model": MODEL, "prompt": "Count to twenty.", "stream": False,
                "options": {"temperature": 0, "num_predict": 8}}
        first = client.post("/api/generate", json=body)
        assert first.status_code == 200 and first.json()["eval_count"] >= 5
        assert first.headers["x-ratelimit-limit"] == "5"
        second = client.post("/api/generate", json=body)
        assert second.status_code == 429
        assert "generated tokens per hour" in second.json()["error"]
        assert second.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(second.headers["retry-after"]) <= 3600


class _As:
    """Test double for the auth middleware's output only: puts a given principal on the scope, the
    way deskml's auth middleware does once it has verified a key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-test-principal", b"").decode()
            if who:
                limits = {"requests_per_minute": 1} if who == "strict" else None
                scope.setdefault("state", {})["principal"] = Principal(
                    id=who, kind="key", name=who, scopes=ALL_SCOPES, limits=limits)
        await self.app(scope, receive, send)


def test_budgets_are_per_principal_with_their_own_limits(tmp_path: Path, storage: str | None) -> None:
    app = _app(tmp_path, storage, rate_limit_requests_per_minute=2)
    app.add_middleware(_As)
    with TestClient(app) as client:
        def get(who: str) -> int:
            return client.get("/api/tags", headers={"x-test-principal": who}).status_code

        assert [get("alice"), get("alice"), get("alice")] == [200, 200, 429]
        assert [get("bob"), get("bob")] == [200, 200]  # a separate budget
        assert [get("strict"), get("strict")] == [200, 429]  # the key's own limit overrides the default
        assert client.get("/api/tags").status_code == 200  # anonymous: keyed by client IP


def test_budget_and_key_rules() -> None:
    limiter = RateLimiter(make_settings(Path("/tmp/unused"), rate_limit_requests_per_minute=10))
    key = Principal(id="k1", kind="key", name="phone", scopes=ALL_SCOPES,
                    limits={"requests_per_hour": 100, "tokens_per_hour": "5000"})
    assert limiter.budget_for(key) == Budget(10, 100, 5000)
    assert limiter.budget_for(None) == Budget(10, 0, 0)
    assert limiter.key_for(key, "10.0.0.2") == "key:k1"
    anonymous = Principal(id="anonymous", kind="anonymous", name="anonymous", scopes=ALL_SCOPES)
    assert limiter.key_for(anonymous, "10.0.0.2") == "ip:10.0.0.2"
    assert limiter.key_for(None, "") == "ip:unknown"

    async def refused_costs_nothing() -> list[bool]:
        budget = Budget(requests_per_minute=2)
        verdicts = [await limiter.admit("ip:x", budget) for _ in range(4)]
        stats = await limiter.requests.get_window_stats(limiter._items(budget)[0][1], "ip:x")
        return [v.allowed for v in verdicts] + [stats.remaining == 0]

    assert asyncio.run(refused_costs_nothing()) == [True, True, False, False, True]


@pytest.mark.slow  # the real model
def test_prompt_size_limit_is_400(tmp_path: Path) -> None:
    with TestClient(_app(tmp_path, None, max_prompt_chars=40)) as client:
        long = "word " * 20
        r = client.post("/api/generate", json={"model": MODEL, "prompt": long, "stream": False})
        assert r.status_code == 400
        assert "100 characters" in r.json()["error"] and "DESKML_MAX_PROMPT_CHARS" in r.json()["error"]
        r = client.post("/api/chat", json={"model": MODEL, "stream": True,
                                            "messages": [{"role": "user", "content": long}]})
        assert r.status_code == 400 and "over this server's limit of 40" in r.json()["error"]
        r = client.post("/api/embed", json={"model": MODEL, "input": [long]})
        assert r.status_code == 400
        ok = client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                "options": {"num_predict": 2}})
        assert ok.status_code == 200


@pytest.mark.parametrize("fallback", ["none", "memory"])
def test_redis_unreachable_at_start(tmp_path: Path, fallback: str) -> None:
    from deskml.services.redis_store import StartupError

    settings = make_settings(tmp_path, auth="off", redis_url="redis://:hunter2@127.0.0.1:1/0",
                             redis_fallback=fallback, rate_limit_requests_per_minute=1)
    if fallback == "none":
        with pytest.raises(StartupError) as caught, TestClient(create_app(settings)):
            pass
        message = str(caught.value)
        assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
        assert "DESKML_REDIS_FALLBACK=memory" in message and "hunter2" not in message
    else:
        with TestClient(create_app(settings)) as client:
            assert services_of(client.app).ratelimiter.backend == "memory"
            assert [client.get("/api/tags").status_code for _ in range(2)] == [200, 429]
