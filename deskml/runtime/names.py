"""Model names as Ollama spells them: `[host/][namespace/]model[:tag]`, tag `latest` by default."""

from __future__ import annotations

import re

from deskml.core.errors import BadRequest

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:\d{1,5})?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def normalize(name: str) -> str:
    """Canonical `path:tag` form; raises BadRequest for names that could escape the store."""
    raw = (name or "").strip()
    if not raw:
        raise BadRequest("model is required", param="model")
    if ":" in raw.split("/")[-1]:
        path, _, tag = raw.rpartition(":")
    else:
        path, tag = raw, "latest"
    if not path:
        raise BadRequest(f"invalid model name {name!r}", param="model")
    parts = path.split("/")
    host_ok = len(parts) > 1 and _HOST.match(parts[0])
    rest = parts[1:] if host_ok else parts
    if not all(_PART.match(p) for p in rest) or not _TAG.match(tag) or ".." in parts:
        raise BadRequest(f"invalid model name {name!r}", param="model")
    return f"{path.lower()}:{tag}"


def split(name: str) -> tuple[str, str]:
    path, _, tag = normalize(name).rpartition(":")
    return path, tag


def display(name: str) -> str:
    """How a canonical name is shown: Ollama prints the tag even when it is `latest`."""
    return normalize(name)
