"""The record of one HTTP request, filled as it travels down the layers.

The HTTP middleware opens a `RequestRecord` (request id, dialect, client, principal); the runtime
adds what only it knows (model, queue/load/prompt/generation timings, token counts, time to first
token); routers may add the input and output text. When the response ends, the production
services (history, metrics, rate limits) read the finished record. A ContextVar carries it, so
lower layers never import the services that consume it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestRecord:
    request_id: str
    method: str = ""
    path: str = ""
    dialect: str = ""
    client: str = ""
    principal_id: str | None = None  # API key id or user name; None when anonymous
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    model: str | None = None
    backend: str | None = None  # which engine/upstream answered
    cache: str | None = None  # "hit" / "miss" / None when not cacheable
    queue_ns: int = 0
    load_ns: int = 0
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    draft_tokens: int = 0
    draft_accepted_tokens: int = 0
    ttft_ns: int | None = None
    error: str | None = None
    input: Any = None
    output: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_ns(self) -> int:
        return int((time.perf_counter() - self.started) * 1e9)


_current: ContextVar[RequestRecord | None] = ContextVar("deskml_request_record", default=None)


def current_record() -> RequestRecord | None:
    return _current.get()


def set_record(record: RequestRecord | None) -> object:
    return _current.set(record)


def reset_record(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


# Whether whoever reads the current event stream sends its client nothing until the stream is complete
# (a non-streaming reply): the router may then retry a backend that fails anywhere before the end.
_whole_reply: ContextVar[bool] = ContextVar("deskml_whole_reply", default=False)


def reply_is_whole() -> bool:
    return _whole_reply.get()


@contextmanager
def whole_reply() -> Iterator[None]:
    """Mark the event streams read inside as collected whole before the client gets any of it."""
    token = _whole_reply.set(True)
    try:
        yield
    finally:
        _whole_reply.reset(token)
