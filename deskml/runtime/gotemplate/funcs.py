"""The functions a template can call: Go's text/template builtins plus the few Ollama adds.

Each is pure and works on template values only, so the table below is the whole of what a
template can run.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from .common import Fail
from .values import Struct, format_value, go_json, go_type, truth


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Fail(f"cannot {what} with type {go_type(v)}")
    return v


def _kind(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return "nil" if v is None else "bool"
    # Go would refuse int-vs-float64, but Python keeps JSON's 1 and 1.0 apart, so compare them freely.
    return "number" if isinstance(v, (int, float)) else "string" if isinstance(v, str) else "other"


def _eq(a: Any, *others: Any) -> bool:
    for b in others:  # eq a b c means a == b || a == c
        ka, kb = _kind(a), _kind(b)
        if "nil" in (ka, kb):
            if a is None and b is None:
                return True
        elif ka != kb:
            raise Fail(f"incompatible types for comparison: {go_type(a)} and {go_type(b)}")
        elif ka == "other" and not (isinstance(a, Struct) and isinstance(b, Struct)):
            raise Fail(f"non-comparable type {go_type(a)}")
        elif a is b if ka == "other" else a == b:
            return True
    return False


def _less(a: Any, b: Any) -> bool:
    for v in (a, b):
        if _kind(v) not in ("number", "string"):
            raise Fail(f"invalid type for comparison: {go_type(v)}")
    if _kind(a) != _kind(b):
        raise Fail(f"incompatible types for comparison: {go_type(a)} and {go_type(b)}")
    return bool(a < b)


def _and_or(want: bool, *thunks: Any) -> Any:
    for thunk in thunks:  # lazy, so `and .X .X.Y` never evaluates .X.Y when .X is empty
        v = thunk()
        if truth(v) is want:
            return v
    return v


def _len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode()) if isinstance(v, str) else len(v)  # Go's len counts a string's bytes
    raise Fail(f"len of type {go_type(v)}")


def _index(item: Any, *indices: Any) -> Any:
    for idx in indices:
        if isinstance(item, dict):
            if isinstance(idx, (list, dict)):
                raise Fail(f"cannot index map with type {go_type(idx)}")
            item = item.get(idx)
        elif isinstance(item, (str, list, tuple)):
            seq: Any = item.encode() if isinstance(item, str) else item
            if not 0 <= _int(idx, "index") < len(seq):
                raise Fail(f"index out of range: {idx}")
            item = seq[idx]
        else:
            raise Fail(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indices: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise Fail(f"can't slice item of type {go_type(item)}")
    if len(indices) > (2 if isinstance(item, str) else 3):
        raise Fail("too many slice indices")
    seq: Any = item.encode() if isinstance(item, str) else item  # strings slice by byte, as in Go
    idx = [_int(i, "slice") for i in indices]
    bounds = [idx[0] if idx else 0, idx[1] if len(idx) > 1 else len(seq), *idx[2:]]
    for lo, hi in zip([0, *bounds], [*bounds, len(seq)], strict=True):
        if lo > hi:
            raise Fail(f"invalid slice index: {lo} > {hi}")
    out = seq[bounds[0]:bounds[1]]
    return out.decode("utf-8", "replace") if isinstance(item, str) else list(out)


def _print(*args: Any) -> str:
    # fmt.Sprint puts a space between operands only when neither is a string.
    return "".join((" " if i and not isinstance(a, str) and not isinstance(args[i - 1], str) else "") + format_value(a)
                   for i, a in enumerate(args))


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise Fail(f"printf format must be a string, not {go_type(fmt)}")
    used = 0

    def verb(m: re.Match[str]) -> str:
        nonlocal used
        c = m.group(1)
        if c in ("%", ""):
            return "%" if c else "%!(NOVERB)"
        if used >= len(args):
            return f"%!{c}(MISSING)"
        v, used = args[used], used + 1
        is_int = isinstance(v, int) and not isinstance(v, bool)
        if c == "v" or (c == "s" and _kind(v) not in ("nil", "bool", "number")) or (c == "d" and is_int):
            return format_value(v)
        if c == "q" and isinstance(v, str):  # JSON quoting equals Go's for printable text
            return json.dumps(v, ensure_ascii=False)
        if c == "q" and is_int:
            return repr(chr(v)) if 0 <= v <= 0x10FFFF else "'\ufffd'"
        return f"%!{c}({go_type(v)}={format_value(v)})"  # Go's in-band report of a wrong verb

    out = re.sub(r"%(.?)", verb, fmt, flags=re.S)
    extra = ", ".join(f"{go_type(a)}={format_value(a)}" for a in args[used:])
    return out + (f"%!(EXTRA {extra})" if extra else "")


def _date(days: int) -> Any:
    # Ollama accepts (and ignores) a format argument.
    return lambda *_: (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


# name -> (function, min args, max args or None, lazy). Ollama adds json, currentDate, yesterdayDate.
FUNCS: dict[str, tuple[Any, int, int | None, bool]] = {
    "and": (lambda *t: _and_or(False, *t), 1, None, True), "or": (lambda *t: _and_or(True, *t), 1, None, True),
    "not": (lambda v: not truth(v), 1, 1, False), "eq": (_eq, 2, None, False),
    "ne": (lambda a, b: not _eq(a, b), 2, 2, False), "lt": (_less, 2, 2, False),
    "le": (lambda a, b: _less(a, b) or _eq(a, b), 2, 2, False),
    "gt": (lambda a, b: not (_less(a, b) or _eq(a, b)), 2, 2, False),
    "ge": (lambda a, b: not _less(a, b), 2, 2, False), "len": (_len, 1, 1, False),
    "index": (_index, 1, None, False), "slice": (_slice, 1, None, False), "print": (_print, 0, None, False),
    "printf": (_printf, 1, None, False), "json": (go_json, 1, 1, False),
    "currentDate": (_date(0), 0, None, False), "yesterdayDate": (_date(-1), 0, None, False),
}

