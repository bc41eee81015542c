"""Text that can be stored: what JSON allows but UTF-8 cannot encode is replaced before it reaches a
database or a log.

JSON's `"\\ud800"` escape decodes to a lone surrogate, a Python str that has no UTF-8 form: SQLite,
PostgreSQL and a UTF-8 log stream all raise on it. A surrogate pair that arrived as two separate
code points is joined into its character; a lone one becomes U+FFFD.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (the same object when there are none)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def storable_value(value: Any) -> Any:
    """A JSON-shaped value (dicts, lists, strings, scalars) with every string made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(v) for v in value]
    return value
