"""Which deskml nodes a request has passed through (the `X-Deskml-Via` header), carried by a ContextVar
from the HTTP middleware down to the router, which uses it to refuse routing loops."""

from __future__ import annotations

from contextvars import ContextVar

VIA_HEADER = "x-deskml-via"
NODE_HEADER = "x-deskml-node"  # every deskml response names the node that sent it

_via: ContextVar[tuple[str, ...]] = ContextVar("deskml_via", default=())


def parse_via(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())[:64]


def current_via() -> tuple[str, ...]:
    return _via.get()


def set_via(via: tuple[str, ...]) -> object:
    return _via.set(via)


def reset_via(token: object) -> None:
    _via.reset(token)  # type: ignore[arg-type]
