"""The rate-limit middleware: refuses a request over its caller's budget with 429 (Retry-After and
X-RateLimit-* headers) and charges generated tokens when the request ends. The budgets and counters
are `deskml/services/ratelimit.py`'s RateLimiter.

It sits inside the auth middleware, which has put the caller in the scope's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskml.api.errors import dialect_for_path, send_error
from deskml.core.context import current_record
from deskml.core.principal import principal_in
from deskml.services.ratelimit import RateLimiter, Verdict

# Liveness and discovery stay reachable however busy a client is (and CORS preflights are free).
EXEMPT_PATHS = frozenset({"/", "/api/version", "/health", "/metrics", "/favicon.ico", "/ui"})
# The web UI's static files: one page load fetches a dozen of them.
EXEMPT_PREFIXES = ("/ui/",)
_UNITS = {"requests_per_minute": "requests per minute", "requests_per_hour": "requests per hour",
          "tokens_per_hour": "generated tokens per hour"}


class RateLimit:
    """ASGI middleware applying the app's RateLimiter to every API request; `limiter` gives it once the
    lifespan has built it (None before: nothing is limited)."""

    def __init__(self, app: ASGIApp, limiter: Callable[[], RateLimiter | None]) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_http = scope["type"] == "http"
        limiter = self.limiter() if is_http else None
        if limiter is None or scope.get("method") == "OPTIONS" or scope.get("path") in EXEMPT_PATHS \
                or scope.get("path", "").startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        principal = principal_in(scope)
        budget = limiter.budget_for(principal)
        if budget.unlimited:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = limiter.key_for(principal, client[0] if client else "")
        try:
            verdict = await limiter.admit(key, budget)
        except Exception as exc:  # storage outage: fail open, loudly
            limiter.storage_failed(exc)
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            await self._refuse(scope, send, verdict, key)
            return
        extra = verdict.headers or []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            record = current_record()
            if record is not None and budget.tokens_per_hour and record.completion_tokens:
                try:
                    await limiter.charge(key, budget, record.completion_tokens)
                except Exception as exc:
                    limiter.storage_failed(exc)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, verdict: Verdict, key: str) -> None:
        record = current_record()
        if record is not None:
            record.extra["rate_limited"] = verdict.limit
        seconds = math.ceil(verdict.retry_after)
        who = "this API key" if key.startswith("key:") else "this user" if key.startswith("user:") else "this client"
        unit = _UNITS.get(verdict.limit or "", verdict.limit)
        message = f"rate limit reached: {unit} for {who}; retry in {seconds} s"
        await send_error(send, dialect_for_path(scope.get("path", "")), 429, message, code="rate_limit_exceeded",
                         headers=[(b"retry-after", str(seconds).encode()), *(verdict.headers or [])])
