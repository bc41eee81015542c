"""The middleware that turns an unhandled exception into a complete 500 in the dialect's shape."""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskml.api.errors import dialect_for_path, error_body, note_error
from deskml.api.streaming import ClientGone

log = logging.getLogger("deskml.api")


class ContainErrors:
    """Answer an unhandled exception with a complete 500 in the dialect's shape, and keep it from the server.

    An exception that reaches uvicorn makes it close the connection, even after a complete reply (and
    Starlette's own 500 handler re-raises after sending), so a keep-alive client's next request on that
    connection failed with "connection reset". Only a reply cut off mid-way still closes it: that is
    the one honest way left to end it. Sits just inside `Observe`, so the 500 carries X-Request-Id and
    its record says why."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            method, path = scope.get("method", ""), scope.get("path", "")
            if isinstance(exc, ClientGone):  # the client left before its reply: nobody to answer
                return
            log.error("unhandled error on %s %s", method, path, exc_info=exc)
            if complete:
                return
            if started:
                raise
            message = f"internal error: {type(exc).__name__}"
            note_error(message)
            response = JSONResponse(error_body(dialect_for_path(path), 500, message), status_code=500)
            await response(scope, receive, send)
