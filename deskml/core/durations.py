"""Duration parsing shared by settings and every dialect (Ollama's `keep_alive` and friends)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from deskml.core.errors import BadRequest

# The expiry shown for a model kept loaded for ever (a negative keep_alive), as Ollama shows it.
KEPT_FOREVER = datetime(2318, 1, 1, tzinfo=UTC)

# Go's time.Duration tops out at 2^63 ns; Ollama's keep_alive "forever" is that duration.
MAX_KEEP_ALIVE = 2**63 / 1e9

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


def parse_seconds(value: object, name: str = "keep_alive") -> float:
    """A number of seconds or a duration string, as a finite float (no clamping)."""
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a number of seconds or a duration string", param=name)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float: as good as infinite
            seconds = math.inf if value > 0 else -math.inf
    elif isinstance(value, str):
        seconds = parse_duration(value)
    else:
        raise BadRequest(f"{name} must be a number of seconds or a duration string", param=name)
    if math.isnan(seconds):
        raise BadRequest(f"{name} must be a number of seconds or a duration string, not NaN", param=name)
    return seconds


def parse_keep_alive(value: object) -> float:
    """Seconds to keep a model loaded; a negative value means forever, 0 means unload now.

    Anything longer than Go's longest duration (about 292 years, Ollama's "forever") is forever too:
    an expiry that far out cannot be a date, and /api/ps must still be able to show it."""
    seconds = parse_seconds(value)
    return -1.0 if seconds >= MAX_KEEP_ALIVE else seconds


def expiry_at(timestamp: float) -> datetime:
    """The wall-clock `timestamp` as a date, or KEPT_FOREVER when it is later than that (or not a date)."""
    try:
        return min(datetime.fromtimestamp(timestamp, UTC), KEPT_FOREVER)
    except (OverflowError, ValueError, OSError):
        return KEPT_FOREVER
