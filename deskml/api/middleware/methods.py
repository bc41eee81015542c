"""OPTIONS, HEAD and 405 answers that list a path's real methods.

Starlette answers a method a route lacks with 405 and the `Allow` of the first route whose path
matched, so a path served by several routes (GET and POST on `/api/keys`) advertised only one of
them, and OPTIONS (which no route declares) got 405. This middleware asks the app's own routes
which methods a path takes: a plain OPTIONS gets 204 with that list (CORS preflights never reach
here, CORSMiddleware answers them), HEAD on a GET route runs the GET without its body, and a 405's
`Allow` lists every method of the path.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROBED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# What a mount (the web UI's static files) serves.
_MOUNT_METHODS = frozenset({"GET", "HEAD"})


def allowed_methods(app: Any, scope: Scope) -> set[str]:
    """The methods the app's routes take for this request's path; empty when no route has the path."""
    allowed: set[str] = set()
    for method in _PROBED:
        probe = {**scope, "method": method}
        for route in app.router.routes:
            match, _ = route.matches(probe)
            if match == Match.FULL:
                allowed |= _MOUNT_METHODS & {method} if isinstance(route, Mount) else {method}
                break
    if "GET" in allowed:
        allowed.add("HEAD")  # answered below by running the GET
    if allowed:
        allowed.add("OPTIONS")
    return allowed


def allow_header(methods: set[str]) -> bytes:
    return ", ".join(m for m in (*_PROBED, "OPTIONS") if m in methods).encode()


class MethodsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            allowed = allowed_methods(scope["app"], scope)
            if allowed:
                await send({"type": "http.response.start", "status": 204,
                            "headers": [(b"allow", allow_header(allowed))]})
                await send({"type": "http.response.body", "body": b""})
                return
        elif method == "HEAD" and not self._has_own_head(scope) and "GET" in allowed_methods(scope["app"], scope):
            await self.app({**scope, "method": "GET"}, *_head_only(receive, send))
            return
        await self.app(scope, receive, self._fix_405(scope, send))

    @staticmethod
    def _has_own_head(scope: Scope) -> bool:
        for route in scope["app"].router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return True
        return False

    @staticmethod
    def _fix_405(scope: Scope, send: Send) -> Send:
        async def fixed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = allowed_methods(scope["app"], scope)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow_header(allowed))]}
            await send(message)

        return fixed


def _head_only(receive: Receive, send: Send) -> tuple[Receive, Send]:
    """Run a GET for a HEAD: pass its status and headers, end the body at once, and tell the handler
    the client left, so a stream (an event feed) stops instead of running on unseen."""
    done = False

    async def head_receive() -> Message:
        if done:
            return {"type": "http.disconnect"}
        return await receive()

    async def head_send(message: Message) -> None:
        nonlocal done
        if done:
            return
        if message["type"] == "http.response.start":
            await send(message)
            await send({"type": "http.response.body", "body": b""})
            done = True

    return head_receive, head_send
