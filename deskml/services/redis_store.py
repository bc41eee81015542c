"""The optional Redis server behind rate-limit counters and the response cache.

Configured by `DESKML_REDIS_URL`; checked once at start, so a wrong URL or a stopped server is a
clear start-up error (or, with `DESKML_REDIS_FALLBACK=memory`, a warning and in-process storage)
rather than a failure on the first request.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from deskml.settings import Settings

log = logging.getLogger("deskml.services")


class StartupError(RuntimeError):
    """The server cannot start as configured; the message says what to change."""


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


async def redis_available(settings: Settings) -> str | None:
    """The Redis URL to use, None for in-process memory. Raises StartupError when Redis is configured,
    unreachable, and no fallback is allowed."""
    url = settings.redis_url
    if not url:
        return None
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except (RedisError, OSError, ValueError) as exc:
        reason = f"cannot reach Redis at {redacted(url)} (DESKML_REDIS_URL): {exc}"
        if settings.redis_fallback == "memory":
            log.warning("%s; using in-process memory for rate limits and the cache (DESKML_REDIS_FALLBACK=memory), "
                        "so limits are not shared with other deskml processes", reason)
            return None
        raise StartupError(
            f"{reason}. Start Redis, fix the URL, or set DESKML_REDIS_FALLBACK=memory to run without it."
        ) from None
    finally:
        await client.aclose()
    return url
