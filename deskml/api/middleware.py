"""ASGI middleware shared by every dialect."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_JSON_LIKE = {b"", b"application/x-www-form-urlencoded", b"text/plain"}


class JsonBodyDefault:
    """Treat request bodies as JSON unless they say they are multipart or JSON already.

    Ollama reads the body as JSON whatever the Content-Type, and `curl -d '{...}'` (the seed's own
    examples) sends `application/x-www-form-urlencoded`; without this such a request would fail.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in {"POST", "PUT", "PATCH", "DELETE"}:
            headers = list(scope.get("headers") or [])
            current = next((v for k, v in headers if k == b"content-type"), b"")
            if current.split(b";")[0].strip().lower() in _JSON_LIKE:
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
