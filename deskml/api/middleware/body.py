"""ASGI middleware shared by every dialect."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Raw bodies: a blob upload is the file itself, whatever type the client gave it.
_RAW_PREFIXES = ("/api/blobs/",)


def _keeps_type(content_type: bytes) -> bool:
    """multipart forms, and types that already say JSON (application/json, application/*+json)."""
    media = content_type.split(b";")[0].strip().lower()
    main, _, sub = media.partition(b"/")
    return main == b"multipart" or (main == b"application" and (sub == b"json" or sub.endswith(b"+json")))


class JsonBodyDefault:
    """Read every request body as JSON unless it is multipart (or a raw blob upload).

    Ollama parses any body as JSON whatever its Content-Type: `curl -d '{...}'` sends
    `application/x-www-form-urlencoded`, litellm's async Ollama routes send `application/octet-stream`
    or `application/x-ndjson`. Accepting "simple" content types is safe only because the Origin check
    (deskml/api/middleware/guard.py) refuses cross-site pages before this runs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope.get("method") in {"POST", "PUT", "PATCH", "DELETE"}
                and not scope.get("path", "").startswith(_RAW_PREFIXES)):
            headers = list(scope.get("headers") or [])
            current = next((v for k, v in headers if k == b"content-type"), b"")
            if not _keeps_type(current):
                headers = [(k, v) for k, v in headers if k != b"content-type"]
                headers.append((b"content-type", b"application/json"))
                scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413, before they are read whole.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it
    arrives and cut off when it crosses the limit, so a huge upload never fills memory or disk.
    Blob uploads (`POST /api/blobs/...`, model weights streamed to disk) have their own, larger
    `blob_limit`; 0 means no limit here (the blob store still refuses what the disk cannot hold).
    """

    def __init__(self, app: ASGIApp, limit: int, blob_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.blob_limit = limit if blob_limit is None else blob_limit

    def _limit_for(self, scope: Scope) -> tuple[int, str]:
        if scope.get("method") == "POST" and str(scope.get("path", "")).startswith("/api/blobs/"):
            return self.blob_limit, "DESKML_MAX_BLOB_MB"
        return self.limit, "DESKML_MAX_UPLOAD_MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit_for(scope)
        if limit <= 0:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers") or [] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit, setting)
            return
        seen = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal seen, started, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client left: whatever it does next is dropped.
                    if not started:
                        started = refused = True
                        await self._refuse(scope, send, limit, setting)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int, setting: str) -> None:
        from deskml.api.errors import dialect_for_path, send_error

        mb = limit / (1 << 20)
        await send_error(send, dialect_for_path(scope.get("path", "")), 413,
                         f"request body is larger than the {mb:g} MB limit ({setting})",
                         headers=[(b"connection", b"close")])
