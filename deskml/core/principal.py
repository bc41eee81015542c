"""Who made a request: the auth middleware puts it in the request scope's state (`principal_in` reads it).

The other production services (rate limits, metrics, history) read this object and nothing else
from auth, so they never depend on how the caller proved who it is.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def principal_in(scope: Mapping[str, Any]) -> Principal | None:
    """The principal the auth middleware put in an ASGI scope's state; None where it did not run
    (auth off, or a public path before it)."""
    found = (scope.get("state") or {}).get("principal")
    return found if isinstance(found, Principal) else None
