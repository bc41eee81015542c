"""Fixtures for the production-layer tests: Redis (db 5, ours alone) and apps with given settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

REDIS_DB = 5  # this suite's own database on the local Redis: flushed before and after, nothing else touched
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


def _flush() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    if not os.environ.get("CI"):
        pytest.skip("Redis tests run in CI (CI=true) against the local Redis on 6379; set CI=true to run them")
    import redis

    try:
        _flush()
    except redis.RedisError as exc:
        pytest.fail(f"CI is set but Redis at {REDIS_URL} is not reachable: {exc}")
    yield REDIS_URL
    _flush()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str | None:
    """None for in-process memory, or the Redis URL (skipped outside CI)."""
    if request.param == "memory":
        return None
    return str(request.getfixturevalue("redis_url"))
