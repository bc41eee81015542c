"""Logging: JSON lines for machines, a readable format on a terminal, one access line per request.

The access line (logger `deskml.access`) carries the request id and the request's metadata —
never the prompt or the output, and never a header: request content goes only to the history
table, which has its own switch. A redaction filter also masks anything shaped like a bearer
token or API-key header that some other code path might put in a message.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any

from deskml.core.context import RequestRecord
from deskml.core.text import storable
from deskml.settings import Settings

ACCESS_LOGGER = "deskml.access"

# LogRecord attributes that are not extra fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_SECRET_MARKERS = ("bearer ", "authorization:", "x-api-key:", "api_key=", "apikey=", "password=")


def _redact(text: str) -> str:
    """Mask the word after any secret marker (case-insensitive); cheap when none is present."""
    lowered = text.lower()
    if not any(marker in lowered for marker in _SECRET_MARKERS):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        hit = next((m for m in _SECRET_MARKERS if lowered.startswith(m, i)), None)
        if hit is None:
            out.append(text[i])
            i += 1
            continue
        out.append(text[i : i + len(hit)])
        i += len(hit)
        while i < len(text) and text[i] == " ":
            out.append(" ")
            i += 1
        end = i
        # An Authorization value may be "<scheme> <credentials>": mask up to the end of the value.
        stops = "\n\"',;}&" if hit == "authorization:" else " \t\n\"',;}&"
        while end < len(text) and text[end] not in stops:
            end += 1
        if end > i:
            out.append("[redacted]")
        i = end
    return "".join(out)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # A lone surrogate from a request would make the UTF-8 stream raise and lose the line.
        return storable(json.dumps(data, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = storable(super().format(record))
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid and record.name != ACCESS_LOGGER else line


def wants_json(settings: Settings, stream: Any = None) -> bool:
    if settings.log_format != "auto":
        return settings.log_format == "json"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def configure_logging(settings: Settings, stream: Any = None) -> list[logging.Handler]:
    """Install deskml's handlers on the root logger (replacing earlier ones); returns them."""
    stream = stream if stream is not None else sys.stderr
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(stream)
    console.setFormatter(JsonFormatter() if wants_json(settings, stream) else TextFormatter())
    handlers.append(console)
    if settings.log_file is not None:
        path = settings.log_file.expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            path, maxBytes=int(settings.log_file_max_mb * (1 << 20)), backupCount=max(0, settings.log_file_backups),
            encoding="utf-8",
        )
        rotating.setFormatter(JsonFormatter())
        handlers.append(rotating)
    redact = RedactSecrets()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.addFilter(redact)
        root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's loggers propagate to ours (its own config is switched off in server.py)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handlers


def access_fields(record: RequestRecord) -> dict[str, Any]:
    """What one access line says about a request. Content and headers are deliberately absent."""
    fields: dict[str, Any] = {
        "request_id": record.request_id, "method": record.method, "path": record.path,
        "dialect": record.dialect, "status": record.status, "client": record.client,
        "duration_ms": round(record.elapsed_ns / 1e6, 2),
    }
    optional = {
        "route": record.extra.get("route"), "principal": record.principal_id, "model": record.model,
        "backend": record.backend, "cache": record.cache, "error": record.error,
        "ttft_ms": round(record.ttft_ns / 1e6, 2) if record.ttft_ns is not None else None,
        "queue_ms": round(record.queue_ns / 1e6, 2) if record.queue_ns else None,
        "load_ms": round(record.load_ns / 1e6, 2) if record.load_ns else None,
        "prompt_tokens": record.prompt_tokens or None, "completion_tokens": record.completion_tokens or None,
        "rate_limited": record.extra.get("rate_limited"),
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


class AccessLog:
    """A record sink writing one INFO line per finished request."""

    def __init__(self) -> None:
        self.log = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, record: RequestRecord) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        fields = access_fields(record)
        took = fields["duration_ms"]
        message = f"{record.method} {record.path} {record.status} {took:.0f}ms"
        if record.model:
            message += f" model={record.model}"
        if record.cache:
            message += f" cache={record.cache}"
        if record.error:
            message += f" error={record.error!r}"
        message += f" id={record.request_id}"
        self.log.info(message, extra=fields)
