"""Typed errors shared by every layer; each dialect renders them in its own shape.

The `status` is the HTTP status; `code` is a short machine-readable name that the OpenAI
dialect reports as `type`/`code`.
"""

from __future__ import annotations

from typing import TypeVar


class DeskmlError(Exception):
    status: int = 500
    code: str = "server_error"
    # The message is another program's text (llama.cpp, an upstream server), which may quote the
    # prompt: with DESKML_HISTORY_CONTENT=false it is kept out of the history and the log.
    quotes_input: bool = False

    def __init__(self, message: str, *, param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after


_E = TypeVar("_E", bound=DeskmlError)


def from_engine(error: _E) -> _E:
    """Mark `error` as carrying an engine's or upstream's own words (see `quotes_input`)."""
    error.quotes_input = True
    return error


class BadRequest(DeskmlError):
    status = 400
    code = "invalid_request_error"


class ContextOverflow(BadRequest):
    code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str | None = None, prompt_tokens: int | None = None,
                 context: int | None = None) -> None:
        super().__init__(message, param=param)
        # The engine's counts, when it gave them: truncation sizes its cut from them in one step.
        self.prompt_tokens = prompt_tokens
        self.context = context


class Unauthorized(DeskmlError):
    status = 401
    code = "authentication_error"


class Forbidden(DeskmlError):
    status = 403
    code = "permission_error"


class NotFound(DeskmlError):
    status = 404
    code = "not_found_error"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found", param="model")
        self.name = name


class Conflict(DeskmlError):
    status = 409
    code = "conflict_error"


class PayloadTooLarge(DeskmlError):
    status = 413
    code = "payload_too_large"


class RateLimited(DeskmlError):
    status = 429
    code = "rate_limit_exceeded"


class NotImplementedFeature(DeskmlError):
    """A feature that needs an optional extra or that this model cannot do (HTTP 501)."""

    status = 501
    code = "not_implemented"


class Busy(DeskmlError):
    status = 503
    code = "server_busy"

    def __init__(self, message: str = "server busy", *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


class EngineError(DeskmlError):
    status = 500
    code = "engine_error"


class ModelLoadError(DeskmlError):
    status = 500
    code = "model_load_error"


class UpstreamError(DeskmlError):
    """A server deskml fetched from (a model hub, a package index) failed or could not be reached."""

    status = 502
    code = "upstream_error"


class InsufficientStorage(DeskmlError):
    status = 507
    code = "insufficient_storage"


class UpstreamUnavailable(UpstreamError):
    """No backend could take the request (all down, refusing or open-circuited); another try later may work."""

    status = 503
    code = "upstream_unavailable"


class LoopDetected(DeskmlError):
    """A request came back to a deskml node it had already passed through (a routing loop)."""

    status = 508
    code = "loop_detected"
