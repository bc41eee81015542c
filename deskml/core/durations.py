"""Duration parsing shared by settings and every dialect (Ollama's `keep_alive` and friends)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from deskml.core.errors import BadRequest

# The expiry shown for a model kept loaded for ever (a negative keep_alive), as Ollama shows it.
KEPT_FOREVER = datetime(2318, 1, 1, tzinfo=UTC)

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("5m", "1h30m", "-1s", "300ms") or a bare number of seconds."""
    raw = text.strip()
    if not raw:
        raise BadRequest("empty duration")
    try:
        return float(raw)
    except ValueError:
        pass
    sign = -1.0 if raw.startswith("-") else 1.0
    body = raw.lstrip("+-")
    pos, total = 0, 0.0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise BadRequest(f"invalid duration {text!r}: use seconds or a duration like '5m' or '1h'")
    return sign * total


def parse_keep_alive(value: object) -> float:
    """Seconds to keep a model loaded; a negative value means forever, 0 means unload now."""
    if isinstance(value, bool):
        raise BadRequest("keep_alive must be a number of seconds or a duration string")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise BadRequest("keep_alive must be a number of seconds or a duration string")
