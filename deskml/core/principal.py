"""Who made a request: set by the auth middleware on `request.state.principal`.

The other production services (rate limits, metrics, history) read this object and nothing else
from auth, so they never depend on how the caller proved who it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SCOPE_INFERENCE = "inference"
SCOPE_MODELS = "models"
SCOPE_ADMIN = "admin"
ALL_SCOPES: frozenset[str] = frozenset({SCOPE_INFERENCE, SCOPE_MODELS, SCOPE_ADMIN})

PrincipalKind = Literal["key", "user", "anonymous"]


@dataclass(frozen=True, slots=True)
class Principal:
    id: str  # API key id, user name, or "anonymous"
    kind: PrincipalKind
    name: str  # the key's name, or the user name
    scopes: frozenset[str]
    # Per-principal rate limits, as stored with the key or user (None: the server defaults apply).
    limits: dict[str, Any] | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


ANONYMOUS = Principal(id="anonymous", kind="anonymous", name="anonymous", scopes=ALL_SCOPES)


def principal_of(state: Any) -> Principal:
    """The principal on a request's state (`request.state`); anonymous when auth is off."""
    return getattr(state, "principal", None) or ANONYMOUS
