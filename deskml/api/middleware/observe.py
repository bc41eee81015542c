"""The outermost middleware: one RequestRecord per HTTP request, and graceful draining at shutdown.

Per request it opens a `RequestRecord` (request id, dialect, method, path, client), makes it the
current record for everything below, adds `X-Request-Id` (and `X-Deskml-Cache` when the reply was
cacheable) to the response headers, and, once the response has been sent in full — or the client
went away, or shutdown cut it short — hands the finished record to every record sink the app built
(history, metrics, the access log, token accounting).

At shutdown (`Drain.begin`, deskml/services/drain.py), requests still running get `grace` seconds;
then they are cancelled and a stream that already began ends with one final error line in its own
framing (NDJSON line or SSE event) instead of a silently cut connection, and a reply that had not
begun becomes a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskml.api.errors import dialect_for_path, error_body, send_error
from deskml.core.context import RequestRecord, reset_record, set_record
from deskml.core.trace import annotate
from deskml.services.drain import Drain
from deskml.services.records import RecordSink, run_sinks

log = logging.getLogger("deskml.observe")

SHUTDOWN_MESSAGE = "server is shutting down; the reply was cut short, retry later"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when it is a sane token (≤128 safe characters), else a new one."""
    for key, value in headers:
        if key == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if 0 < len(text) <= 128 and all(c in _ID_CHARS for c in text):
                return text
            break
    return uuid.uuid4().hex


def is_ui_request(headers: list[tuple[bytes, bytes]]) -> bool:
    """The web UI marks its own fetches (`X-Deskml-Client: ui`) so that the history can hide its polling."""
    return any(key == b"x-deskml-client" and value.strip().lower() == b"ui" for key, value in headers)


def cache_mode_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    """'off' (neither read nor store), 'refresh' (skip the lookup, store the fresh reply) or None."""
    mode: str | None = None
    for key, value in headers:
        if key == b"x-deskml-cache":
            lowered = value.strip().lower()
            if lowered in {b"off", b"bypass", b"no"}:
                return "off"
            if lowered == b"refresh":
                mode = "refresh"
        elif key == b"cache-control":
            directives = {part.strip() for part in value.lower().split(b",")}
            if b"no-store" in directives:
                return "off"
            if b"no-cache" in directives:
                mode = "refresh"
    return mode


def _final_error_chunk(content_type: bytes, dialect: str) -> bytes | None:
    """The last piece of a cut-short stream, in the stream's own framing; None when it has none."""
    media = content_type.split(b";")[0].strip().lower()
    body = error_body(dialect, 503, SHUTDOWN_MESSAGE, code="server_shutting_down")  # type: ignore[arg-type]
    if media == b"text/event-stream":
        return b"data: " + json.dumps(body).encode() + b"\n\n"
    if media in {b"application/x-ndjson", b"application/jsonl", b"application/json-lines"}:
        return json.dumps(body).encode() + b"\n"
    return None


class Observe:
    """`drain` and `sinks` give the app's drain and record sinks once the lifespan has built them (None
    and nothing before)."""

    def __init__(self, app: ASGIApp, drain: Callable[[], Drain | None],
                 sinks: Callable[[], Sequence[RecordSink]]) -> None:
        self.app = app
        self.drain = drain
        self.sinks = sinks
        self._routes: dict[tuple[str, str], str] = {}

    def route_template(self, app: Any, method: str, path: str) -> str:
        """The route a request matched (e.g. /api/task/{task_id}/status), or 'unmatched': templates
        keep metric labels few whatever ids appear in paths."""
        key = (method, path)
        found = self._routes.get(key)
        if found is not None:
            return found
        scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        found = None
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                found = str(getattr(route, "path", path))
                break
            if match == Match.PARTIAL and found is None:
                found = str(getattr(route, "path", path))
        if len(self._routes) > 4096:
            self._routes.clear()
        self._routes[key] = found = found or "unmatched"
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        path = scope.get("path", "")
        client = scope.get("client")
        record = RequestRecord(
            request_id=request_id_from(headers), method=scope.get("method", ""), path=path,
            dialect=dialect_for_path(path), client=client[0] if client else "",
        )
        annotate(record, headers)  # a router's claims (on whose behalf, health check): data, never authority
        mode = cache_mode_from(headers)
        if mode is not None:
            record.extra["cache_mode"] = mode
        if is_ui_request(headers):
            record.extra["client_app"] = "ui"
        token = set_record(record)
        drain = self.drain()
        started = complete = gone = False
        content_type = b""

        async def observed_receive() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                gone = True
            return message

        async def observed_send(message: Message) -> None:
            nonlocal started, complete, content_type
            if message["type"] == "http.response.start":
                started = True
                record.status = int(message["status"])
                extra = [(b"x-request-id", record.request_id.encode())]
                if record.cache in {"hit", "miss"}:
                    extra.append((b"x-deskml-cache", record.cache.encode()))
                out = [*message.get("headers", []), *extra]
                content_type = next((v for k, v in out if k.lower() == b"content-type"), b"")
                message = {**message, "headers": out}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        task = asyncio.current_task()
        try:
            if drain is not None and drain.draining:
                await self._refuse(record, observed_send)
                return
            if drain is not None and task is not None:
                drain.enter(task)
            try:
                await self.app(scope, observed_receive, observed_send)
            except asyncio.CancelledError:
                if drain is None or not drain.expired or task is None:
                    raise
                task.uncancel()  # the drain cancelled us: end this reply properly instead
                await self._cut_short(record, started, complete, content_type, observed_send)
            finally:
                if drain is not None and task is not None:
                    drain.leave(task)
        finally:
            if gone and not complete and record.error is None:
                record.error = "client disconnected"
            if record.status == 0:  # nothing was sent: the client left first (499, as nginx logs it) or a crash
                record.status = 499 if gone else 500
            record.extra["route"] = self.route_template(scope["app"], record.method, path)
            reset_record(token)
            await run_sinks(self.sinks(), record)

    async def _refuse(self, record: RequestRecord, send: Callable[[Message], Awaitable[None]]) -> None:
        record.error = "server shutting down"
        await send_error(send, record.dialect, 503, "server is shutting down",  # type: ignore[arg-type]
                         headers=[(b"retry-after", b"5"), (b"connection", b"close")])

    async def _cut_short(self, record: RequestRecord, started: bool, complete: bool, content_type: bytes,
                         send: Callable[[Message], Awaitable[None]]) -> None:
        record.error = "ended by shutdown"
        if complete:
            return
        if not started:
            await self._refuse(record, send)
            record.error = "ended by shutdown"
            return
        chunk = _final_error_chunk(content_type, record.dialect)
        if chunk is None:
            # A raw byte stream has no error framing: leave it unterminated so the client sees a
            # broken transfer rather than a complete but truncated file.
            raise ConnectionAbortedError("stream ended by shutdown")
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
