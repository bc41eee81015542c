"""Rate limits per API key, user or (anonymous) client IP, with the `limits` library.

Three budgets: requests per minute and per hour (moving windows: a refused request costs nothing)
and generated tokens per hour (a fixed window charged with the reply's completion tokens when the
request ends; a request is refused while the budget is spent). Counters live in process memory, or
in Redis when `DESKML_REDIS_URL` is set so that several deskml processes share one budget.

The ASGI middleware that applies them is `deskml/api/middleware/ratelimit.py`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from deskml.settings import Settings

log = logging.getLogger("deskml.ratelimit")


@dataclass(frozen=True)
class Budget:
    requests_per_minute: int = 0
    requests_per_hour: int = 0
    tokens_per_hour: int = 0

    @property
    def unlimited(self) -> bool:
        return not (self.requests_per_minute or self.requests_per_hour or self.tokens_per_hour)


@dataclass
class Verdict:
    allowed: bool
    limit: str | None = None  # which budget refused
    retry_after: float = 0.0
    headers: list[tuple[bytes, bytes]] | None = None


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class RateLimiter:
    def __init__(self, settings: Settings, redis_url: str | None = None) -> None:
        self.defaults = Budget(
            settings.rate_limit_requests_per_minute, settings.rate_limit_requests_per_hour,
            settings.rate_limit_tokens_per_hour,
        )
        self.storage: Storage
        if redis_url:
            self.storage = RedisStorage("async+" + redis_url, implementation="redispy", key_prefix="deskml:rl")
        else:
            self.storage = MemoryStorage()
        self.backend = "redis" if redis_url else "memory"
        self.requests = MovingWindowRateLimiter(self.storage)
        self.tokens = FixedWindowRateLimiter(self.storage)
        self._warned = 0.0

    def budget_for(self, principal: Any) -> Budget:
        """The caller's own limits where its key or user has them, else the server's defaults."""
        limits = getattr(principal, "limits", None)
        if not limits:
            return self.defaults
        return Budget(
            _int(limits.get("requests_per_minute", self.defaults.requests_per_minute)),
            _int(limits.get("requests_per_hour", self.defaults.requests_per_hour)),
            _int(limits.get("tokens_per_hour", self.defaults.tokens_per_hour)),
        )

    @staticmethod
    def key_for(principal: Any, client: str) -> str:
        if principal is not None and getattr(principal, "kind", "anonymous") != "anonymous":
            return f"{principal.kind}:{principal.id}"
        return f"ip:{client or 'unknown'}"

    def _items(self, budget: Budget) -> list[tuple[str, RateLimitItem]]:
        items: list[tuple[str, RateLimitItem]] = []
        if budget.requests_per_minute:
            items.append(("requests_per_minute", RateLimitItemPerMinute(budget.requests_per_minute, namespace="req")))
        if budget.requests_per_hour:
            items.append(("requests_per_hour", RateLimitItemPerHour(budget.requests_per_hour, namespace="req")))
        return items

    @staticmethod
    def _token_item(budget: Budget) -> RateLimitItem:
        return RateLimitItemPerHour(budget.tokens_per_hour, namespace="tok")

    async def admit(self, key: str, budget: Budget) -> Verdict:
        now = time.time()
        shown: tuple[int, int, float] | None = None  # limit, remaining, seconds to reset: the tightest
        if budget.tokens_per_hour:
            item = self._token_item(budget)
            stats = await self.tokens.get_window_stats(item, key)
            reset_in = min(stats.reset_time - now, item.get_expiry())
            if stats.remaining <= 0:
                return self._refusal("tokens_per_hour", item.amount, reset_in)
            shown = (item.amount, stats.remaining, reset_in)
        for name, item in self._items(budget):
            allowed = await self.requests.hit(item, key)
            stats = await self.requests.get_window_stats(item, key)
            # whole-second clocks in the storages can put the reset a second past the window
            reset_in = min(stats.reset_time - now, item.get_expiry())
            if not allowed:
                return self._refusal(name, item.amount, reset_in)
            if shown is None or stats.remaining / item.amount < shown[1] / shown[0]:
                shown = (item.amount, stats.remaining, reset_in)
        headers = _headers(*shown) if shown else None
        return Verdict(True, headers=headers)

    async def charge(self, key: str, budget: Budget, tokens: int) -> None:
        if budget.tokens_per_hour and tokens > 0:
            await self.tokens.hit(self._token_item(budget), key, cost=tokens)

    def _refusal(self, name: str, amount: int, retry_after: float) -> Verdict:
        wait = max(1.0, retry_after)
        return Verdict(False, limit=name, retry_after=wait, headers=_headers(amount, 0, wait))

    def storage_failed(self, exc: Exception) -> None:
        # Counters unavailable (Redis went away): serve rather than refuse everyone; say so, not too often.
        now = time.monotonic()
        if now - self._warned > 30:
            self._warned = now
            log.warning("rate-limit storage (%s) failed, requests are not being limited: %s", self.backend, exc)

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        if isinstance(self.storage, RedisStorage):
            bridge = getattr(self.storage, "bridge", None)
            storage = getattr(bridge, "storage", None)
            close = getattr(storage, "aclose", None)
            if close is not None:
                await close()


def _headers(limit: int, remaining: int, reset_in: float) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit", str(limit).encode()),
        (b"x-ratelimit-remaining", str(max(0, remaining)).encode()),
        (b"x-ratelimit-reset", str(max(0, math.ceil(reset_in))).encode()),
    ]
