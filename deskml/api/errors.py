"""Render core errors in the shape of the dialect that received the request.

The dialect is decided by path, so a bad request to `/v1/...` gets an OpenAI error object,
one to the seed's ML-backend routes gets `{success:false,error}`, and the rest Ollama's `{"error":...}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from deskml.api.deps import built_services
from deskml.api.model_hints import with_hints
from deskml.core.context import current_record
from deskml.core.errors import DeskmlError, ModelNotFound
from deskml.core.text import storable
from deskml.runtime.diskspace import insufficient, is_disk_full
from deskml.settings import Settings

log = logging.getLogger("deskml.api")

Dialect = Literal["ollama", "openai", "backend"]

# The seed's MLBackendService routes (and deskml's routes in the same style).
BACKEND_PREFIXES = ("/health", "/api/llm/", "/api/vision/", "/api/audio/", "/api/images/", "/api/train", "/api/task/")


def dialect_for_path(path: str) -> Dialect:
    if path.startswith("/v1/") or path == "/v1":
        return "openai"
    if path.startswith(BACKEND_PREFIXES):
        return "backend"
    return "ollama"


_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_error", 501: "not_implemented_error", 503: "server_error", 507: "server_error",
}


def error_body(dialect: Dialect, status: int, message: str, *, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    message = storable(message)  # a message quoting a lone surrogate could not be encoded as UTF-8
    if dialect == "openai":
        return {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                "param": param,
                "code": code,
            }
        }
    if dialect == "backend":
        return {"success": False, "error": message}
    return {"error": message}


async def send_error(send: Send, dialect: Dialect, status: int, message: str, *, code: str | None = None,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON error reply in the dialect's shape, for middleware that answers before any route."""
    payload = json.dumps(error_body(dialect, status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]})
    await send({"type": "http.response.body", "body": payload})


def error_response(dialect: Dialect, exc: DeskmlError) -> JSONResponse:
    headers: dict[str, str] = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    code = exc.code
    if dialect == "openai" and exc.status == 404 and code == "model_not_found":
        code = "model_not_found"
    return JSONResponse(
        error_body(dialect, exc.status, exc.message, code=code, param=exc.param),
        status_code=exc.status,
        headers=headers,
    )


def format_validation(exc: RequestValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return "invalid JSON in request body: " + str(err.get("ctx", {}).get("error", err.get("msg")))
        if kind == "missing" and loc:
            parts.append(f"{'.'.join(loc)} is required")
        elif loc:
            parts.append(f"{'.'.join(loc)}: {err.get('msg')}")
        else:
            parts.append(str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def recordable_message(exc: DeskmlError, settings: Settings | None) -> str:
    """What the history and the log may say about `exc`: its message, unless that is an engine's
    text (which can quote the prompt) and the history is told to keep no content. The client's own
    reply still carries the full message."""
    if not exc.quotes_input or settings is None or settings.history_content:
        return exc.message
    return f"{exc.code} (HTTP {exc.status}): the engine's message is not recorded, it may quote the prompt " \
           "(DESKML_HISTORY_CONTENT=false)"


def note_error(message: str) -> None:
    """Keep the message on the request record, so the history says why a request failed."""
    record = current_record()
    if record is not None and record.error is None:
        record.error = message


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeskmlError)
    async def _deskml(request: Request, exc: DeskmlError) -> JSONResponse:
        services = built_services(request)
        if isinstance(exc, ModelNotFound) and services is not None:
            exc = with_hints(exc, services)
        kept = recordable_message(exc, services.settings if services is not None else None)
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, kept)
        note_error(kept)
        return error_response(dialect_for_path(request.url.path), exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        dialect = dialect_for_path(request.url.path)
        message = format_validation(exc)
        note_error(message)
        return JSONResponse(error_body(dialect, 400, message), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        dialect = dialect_for_path(request.url.path)
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"{request.method} {request.url.path} not found"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return JSONResponse(
            error_body(dialect, exc.status_code, message), status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        """A full disk is 507 wherever it strikes (a file write, a database commit); other faults stay 500."""
        if not is_disk_full(exc):
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            message = f"internal error: {type(exc).__name__}"
            note_error(message)
            return JSONResponse(error_body(dialect_for_path(request.url.path), 500, message), status_code=500)
        services = built_services(request)
        where = Path(services.settings.data_dir) if services is not None else Path.cwd()
        what = "a database write" if isinstance(exc, DBAPIError) else "a file write"
        error = insufficient(where, what)
        log.error("%s %s failed: %s", request.method, request.url.path, error.message)
        note_error(error.message)
        return error_response(dialect_for_path(request.url.path), error)

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(DBAPIError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        dialect = dialect_for_path(request.url.path)
        return JSONResponse(error_body(dialect, 500, f"internal error: {type(exc).__name__}"), status_code=500)
