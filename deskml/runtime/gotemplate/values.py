"""Go values as templates see them, and Go's ways of printing them (fmt's %v, encoding/json).

Plain Python data stands for Go maps, slices and scalars; the classes here cover what plain data
cannot say: a struct's fixed fields and JSON tags, and Ollama's types whose String() emits JSON.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from .common import Fail


class Struct:
    """A Go struct: fixed capitalised fields (others are an error, as in Go) and its JSON tags."""

    __slots__ = ("fields", "name", "stringer", "tags")

    def __init__(self, name: str, fields: dict[str, Any], tags: dict[str, tuple[str, bool]] | None = None,
                 stringer: bool = False) -> None:
        self.name, self.fields, self.tags, self.stringer = name, fields, tags, stringer


class GoMap(dict):  # type: ignore[type-arg]
    """A Go map with a JSON String() (Ollama's templateArgs/templateProperties); may be nil."""

    def __init__(self, data: Any = (), *, ordered: bool = False, nil: bool = False) -> None:
        super().__init__(data)
        self.ordered, self.nil = ordered, nil


class GoList(list):  # type: ignore[type-arg]
    """A Go slice with a JSON String() (Ollama's templateTools); a nil one encodes as null."""

    def __init__(self, data: Any = (), *, nil: bool = False) -> None:
        super().__init__(data)
        self.nil = nil


def truth(v: Any) -> bool:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return v is not None and (v != 0 if isinstance(v, (bool, int, float)) else True)


def go_type(v: Any) -> str:
    if isinstance(v, Struct):
        return v.name
    kinds = ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"), (dict, "map"), (list, "slice"))
    return next((name for kind, name in kinds if isinstance(v, kind)), "nil" if v is None else type(v).__name__)


def _go_float(f: float, for_json: bool = False) -> str:
    """Shortest round-trip digits laid out as Go does, which differs from Python's repr: fmt
    switches to e-notation at exponent 6 (1e+06), encoding/json only outside [1e-6, 1e21)."""
    if f != f or f in (float("inf"), float("-inf")):
        if for_json:
            raise Fail(f"json: unsupported value: {f}")
        return "NaN" if f != f else ("+Inf" if f > 0 else "-Inf")
    sign = "-" if str(f).startswith("-") else ""
    if f == 0:
        return sign + "0"
    t = Decimal(repr(abs(f))).normalize().as_tuple()
    digits, point = "".join(map(str, t.digits)), len(t.digits) + int(t.exponent)
    exp = point - 1
    if (abs(f) < 1e-6 or abs(f) >= 1e21) if for_json else (exp < -4 or exp >= 6):
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 1 if for_json and exp < 0 else 2  # the JSON encoder trims "e-07" to "e-7", fmt does not
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):0{width}d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    return sign + (digits + "0" * (point - len(digits)) if point >= len(digits)
                   else f"{digits[:point]}.{digits[point:]}")


def map_items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    if getattr(d, "ordered", False):
        return list(d.items())
    try:
        return sorted(d.items(), key=lambda kv: kv[0])  # Go sorts map keys when ranging and encoding
    except TypeError:
        return list(d.items())


def go_json(v: Any) -> str:
    """encoding/json.Marshal: compact, struct field order, sorted map keys, HTML-safe escaping."""
    if v is None or getattr(v, "nil", False):
        return "null"
    if isinstance(v, (bool, int, float)):
        return _go_float(v, True) if isinstance(v, float) else format_value(v)
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        for ch in "<>&\u2028\u2029":
            s = s.replace(ch, f"\\u{ord(ch):04x}")
        return s
    if isinstance(v, Struct):
        tags = v.tags or {name: (name, False) for name in v.fields}
        return "{" + ",".join(f"{go_json(tags[k][0])}:{go_json(x)}" for k, x in v.fields.items()
                              if not (tags[k][1] and not isinstance(x, Struct) and not truth(x))) + "}"
    if isinstance(v, dict):
        return "{" + ",".join(f"{go_json(str(k))}:{go_json(x)}" for k, x in map_items(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    raise Fail(f"json: unsupported type {go_type(v)}")


def format_value(v: Any) -> str:
    """fmt's %v for the values templates see."""
    if v is None:
        return "<nil>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _go_float(v) if isinstance(v, float) else str(v)
    if isinstance(v, GoMap) and v.nil:
        return "{}"  # Ollama's String() special-cases a nil map
    if isinstance(v, (GoMap, GoList)) or (isinstance(v, Struct) and v.stringer):
        return go_json(v)
    if isinstance(v, Struct):
        return "{" + " ".join(format_value(x) for x in v.fields.values()) + "}"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{format_value(k)}:{format_value(x)}" for k, x in map_items(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(format_value(x) for x in v) + "]"
    return str(v)

