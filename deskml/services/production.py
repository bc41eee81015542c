"""Start and stop the observability and traffic services for the app factory's lifespan:
request-record sinks (metrics, access log), the shutdown drain, rate limits and the response cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from deskml.services.cache import MemoryStore, RedisStore, ResponseCacheService
from deskml.services.logging import AccessLog
from deskml.services.metrics import Metrics
from deskml.services.observe import Drain
from deskml.services.ratelimit import RateLimiter
from deskml.services.redis_store import redis_available
from deskml.settings import Settings

log = logging.getLogger("deskml.services")


async def start_traffic_services(state: Any, settings: Settings) -> None:
    """Put `record_sinks`, `drain`, `metrics`, `ratelimiter` and `response_cache` on `state`.

    Raises StartupError when Redis is configured but unreachable (and no fallback is allowed)."""
    sinks: list[Any] = getattr(state, "record_sinks", None) or []
    state.record_sinks = sinks
    drain = Drain()
    drain.bind(asyncio.get_running_loop())
    state.drain = drain
    state.metrics = None
    if settings.metrics:
        state.metrics = Metrics(state)
        sinks.append(state.metrics.observe)
    sinks.append(AccessLog())
    redis_url = await redis_available(settings)
    state.ratelimiter = RateLimiter(settings, redis_url)
    state.response_cache = None
    if settings.cache:
        store = RedisStore(redis_url) if redis_url else MemoryStore(
            settings.cache_max_entries, int(settings.cache_max_mb * (1 << 20))
        )
        state.response_cache = ResponseCacheService(store, settings.cache_ttl)
    log.debug("rate limits and cache on %s", "redis" if redis_url else "memory")


async def stop_traffic_services(state: Any) -> None:
    drain: Drain | None = getattr(state, "drain", None)
    if drain is not None:
        drain.close()
    cache: ResponseCacheService | None = getattr(state, "response_cache", None)
    if cache is not None:
        await cache.close()
    limiter: RateLimiter | None = getattr(state, "ratelimiter", None)
    if limiter is not None:
        await limiter.close()
