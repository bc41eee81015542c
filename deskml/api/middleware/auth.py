"""The ASGI middleware that authenticates every HTTP request and checks its scope.

It sits inside the request-record middleware (so it can note who called) and inside CORS (so a
browser's preflight is answered without credentials and a 401 still carries CORS headers).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from deskml.api.errors import dialect_for_path, error_body
from deskml.core.context import current_record
from deskml.core.errors import DeskmlError, Forbidden, Unauthorized
from deskml.core.principal import ANONYMOUS, SCOPE_ADMIN, SCOPE_INFERENCE, SCOPE_MODELS, Principal
from deskml.services.auth import KEY_PREFIX, AuthService

PUBLIC_PATHS = frozenset({"/", "/api/version", "/health", "/login", "/login/refresh"})
# The web UI's static files: they hold no data, and the page must load to show its login form.
PUBLIC_PREFIXES = ("/ui/",)
ADMIN_PREFIXES = ("/api/keys", "/api/users", "/api/history", "/api/admin", "/api/doctor", "/metrics")
# Routes that change what models exist on this machine.
MODEL_ROUTES = frozenset({
    ("POST", "/api/create"), ("DELETE", "/api/delete"), ("POST", "/api/pull"), ("POST", "/api/push"),
    ("POST", "/api/copy"),
})
MODEL_PREFIXES = ("/api/blobs/",)
# What a caller on a public route is, when anonymous access is not allowed: nothing more than that.
PUBLIC_ONLY = Principal(id="anonymous", kind="anonymous", name="anonymous", scopes=frozenset())


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None for public routes."""
    if method == "OPTIONS" or path in PUBLIC_PATHS or path == "/ui" or path.startswith(PUBLIC_PREFIXES):
        return None
    if path.startswith(ADMIN_PREFIXES):
        return SCOPE_ADMIN
    if (method, path) in MODEL_ROUTES or path.startswith(MODEL_PREFIXES):
        return SCOPE_MODELS
    if method == "DELETE" and path.startswith("/v1/models/"):
        return SCOPE_MODELS
    return SCOPE_INFERENCE


def credential(headers: Headers) -> str | None:
    """The key or token a request carries: `Authorization: Bearer ...` (what the ollama and openai
    clients send) or `X-API-Key`."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def is_deskml_credential(token: str) -> bool:
    """A deskml API key (`dk_...`) or a login token (a JWT: three dot-separated parts)."""
    return token.startswith(KEY_PREFIX) or token.count(".") == 2


class AuthMiddleware:
    """`auth` gives the app's AuthService once the lifespan has built it (None before: nothing is checked)."""

    def __init__(self, app: ASGIApp, auth: Callable[[], AuthService | None]) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        auth = self.auth()
        if auth is None:  # the lifespan has not run (or auth is off)
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        needed = required_scope(method, path)
        if path == "/metrics" and not auth.settings.metrics_auth:
            needed = None
        try:
            principal = await self._principal(auth, Headers(scope=scope), needed)
            if needed is not None and not principal.allows(needed):
                raise Forbidden(f"this {_kind(principal)} lacks the '{needed}' scope needed for {method} {path}")
        except DeskmlError as exc:
            await self._reject(scope, receive, send, path, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        record = current_record()
        if record is not None and principal.kind != "anonymous":
            record.principal_id = principal.id
            record.extra["principal_kind"] = principal.kind
        await self.app(scope, receive, send)

    @staticmethod
    async def _principal(auth: AuthService, headers: Headers, needed: str | None) -> Principal:
        token = credential(headers)
        if token is not None and auth.allow_anonymous and not is_deskml_credential(token):
            # OpenAI SDKs refuse to start without an api_key, so clients of a keyless local server
            # send placeholders ("x", "ollama", "lm-studio"). Where anonymous access is allowed such
            # a token is no key rather than a wrong one; a deskml key or login token is still checked.
            token = None
        if token is None:
            if needed is None:
                return ANONYMOUS if auth.allow_anonymous else PUBLIC_ONLY
            if auth.allow_anonymous:
                return ANONYMOUS
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        try:
            return await auth.authenticate(token)
        except Unauthorized:
            if needed is None:  # a stale key must not break health checks and version probes
                return PUBLIC_ONLY
            raise

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, path: str, exc: DeskmlError) -> None:
        record = current_record()
        if record is not None:
            record.error = exc.message
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
            return
        headers = {"WWW-Authenticate": 'Bearer realm="deskml"'} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        code = "invalid_api_key" if exc.status == 401 else "insufficient_scope" if exc.status == 403 else exc.code
        body = error_body(dialect_for_path(path), exc.status, exc.message, code=code)
        await JSONResponse(body, status_code=exc.status, headers=headers)(scope, receive, send)


def _kind(principal: Principal) -> str:
    return {"key": "API key", "user": "user"}.get(principal.kind, "anonymous caller")
