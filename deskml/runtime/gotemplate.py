"""The subset of Go's text/template that Ollama Modelfile TEMPLATEs use, and Ollama's prompt data.

A template can only look up data and call a fixed table of pure functions, so rendering never
runs Python code; output size, work and nesting are capped so a hostile template stays cheap.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

MAX_OUTPUT_BYTES = 10 * 1024 * 1024
MAX_STEPS = 2_000_000
# Blocks and parentheses recurse in Python; capping their depth stays far below its recursion limit.
MAX_NESTING = 64


class TemplateError(ValueError):
    """A template that cannot be parsed or executed."""


class _Fail(Exception):
    """An execution error not yet tagged with the template line it happened on."""


class _Jump(Exception):
    """{{break}} or {{continue}} unwinding to the innermost range."""


_MISSING: Any = object()  # "nothing piped in", which differs from a piped nil
_SPACE = " \t\r\n"
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"})


# --- values ---------------------------------------------------------------------------------------

class _Struct:
    """A Go struct: fixed capitalised fields (others are an error, as in Go) and its JSON tags."""

    __slots__ = ("fields", "name", "stringer", "tags")

    def __init__(self, name: str, fields: dict[str, Any], tags: dict[str, tuple[str, bool]] | None = None,
                 stringer: bool = False) -> None:
        self.name, self.fields, self.tags, self.stringer = name, fields, tags, stringer


class _GoMap(dict):  # type: ignore[type-arg]
    """A Go map with a JSON String() (Ollama's templateArgs/templateProperties); may be nil."""

    def __init__(self, data: Any = (), *, ordered: bool = False, nil: bool = False) -> None:
        super().__init__(data)
        self.ordered, self.nil = ordered, nil


class _GoList(list):  # type: ignore[type-arg]
    """A Go slice with a JSON String() (Ollama's templateTools); a nil one encodes as null."""

    def __init__(self, data: Any = (), *, nil: bool = False) -> None:
        super().__init__(data)
        self.nil = nil


def _truth(v: Any) -> bool:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return v is not None and (v != 0 if isinstance(v, (bool, int, float)) else True)


def _go_type(v: Any) -> str:
    if isinstance(v, _Struct):
        return v.name
    kinds = ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"), (dict, "map"), (list, "slice"))
    return next((name for kind, name in kinds if isinstance(v, kind)), "nil" if v is None else type(v).__name__)


def _go_float(f: float, for_json: bool = False) -> str:
    """Shortest round-trip digits laid out as Go does, which differs from Python's repr: fmt
    switches to e-notation at exponent 6 (1e+06), encoding/json only outside [1e-6, 1e21)."""
    if f != f or f in (float("inf"), float("-inf")):
        if for_json:
            raise _Fail(f"json: unsupported value: {f}")
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


def _items(d: dict[Any, Any]) -> list[tuple[Any, Any]]:
    if getattr(d, "ordered", False):
        return list(d.items())
    try:
        return sorted(d.items(), key=lambda kv: kv[0])  # Go sorts map keys when ranging and encoding
    except TypeError:
        return list(d.items())


def _go_json(v: Any) -> str:
    """encoding/json.Marshal: compact, struct field order, sorted map keys, HTML-safe escaping."""
    if v is None or getattr(v, "nil", False):
        return "null"
    if isinstance(v, (bool, int, float)):
        return _go_float(v, True) if isinstance(v, float) else _fmt(v)
    if isinstance(v, str):
        s = json.dumps(v, ensure_ascii=False)
        for ch in "<>&\u2028\u2029":
            s = s.replace(ch, f"\\u{ord(ch):04x}")
        return s
    if isinstance(v, _Struct):
        tags = v.tags or {name: (name, False) for name in v.fields}
        return "{" + ",".join(f"{_go_json(tags[k][0])}:{_go_json(x)}" for k, x in v.fields.items()
                              if not (tags[k][1] and not isinstance(x, _Struct) and not _truth(x))) + "}"
    if isinstance(v, dict):
        return "{" + ",".join(f"{_go_json(str(k))}:{_go_json(x)}" for k, x in _items(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_go_json(x) for x in v) + "]"
    raise _Fail(f"json: unsupported type {_go_type(v)}")


def _fmt(v: Any) -> str:
    """fmt's %v for the values templates see."""
    if v is None:
        return "<nil>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _go_float(v) if isinstance(v, float) else str(v)
    if isinstance(v, _GoMap) and v.nil:
        return "{}"  # Ollama's String() special-cases a nil map
    if isinstance(v, (_GoMap, _GoList)) or (isinstance(v, _Struct) and v.stringer):
        return _go_json(v)
    if isinstance(v, _Struct):
        return "{" + " ".join(_fmt(x) for x in v.fields.values()) + "}"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{_fmt(k)}:{_fmt(x)}" for k, x in _items(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_fmt(x) for x in v) + "]"
    return str(v)


# --- builtin functions ----------------------------------------------------------------------------

def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Fail(f"cannot {what} with type {_go_type(v)}")
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
            raise _Fail(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
        elif ka == "other" and not (isinstance(a, _Struct) and isinstance(b, _Struct)):
            raise _Fail(f"non-comparable type {_go_type(a)}")
        elif a is b if ka == "other" else a == b:
            return True
    return False


def _less(a: Any, b: Any) -> bool:
    for v in (a, b):
        if _kind(v) not in ("number", "string"):
            raise _Fail(f"invalid type for comparison: {_go_type(v)}")
    if _kind(a) != _kind(b):
        raise _Fail(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
    return bool(a < b)


def _and_or(want: bool, *thunks: Any) -> Any:
    for thunk in thunks:  # lazy, so `and .X .X.Y` never evaluates .X.Y when .X is empty
        v = thunk()
        if _truth(v) is want:
            return v
    return v


def _len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode()) if isinstance(v, str) else len(v)  # Go's len counts a string's bytes
    raise _Fail(f"len of type {_go_type(v)}")


def _index(item: Any, *indices: Any) -> Any:
    for idx in indices:
        if isinstance(item, dict):
            if isinstance(idx, (list, dict)):
                raise _Fail(f"cannot index map with type {_go_type(idx)}")
            item = item.get(idx)
        elif isinstance(item, (str, list, tuple)):
            seq: Any = item.encode() if isinstance(item, str) else item
            if not 0 <= _int(idx, "index") < len(seq):
                raise _Fail(f"index out of range: {idx}")
            item = seq[idx]
        else:
            raise _Fail(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indices: Any) -> Any:
    if not isinstance(item, (str, list, tuple)):
        raise _Fail(f"can't slice item of type {_go_type(item)}")
    if len(indices) > (2 if isinstance(item, str) else 3):
        raise _Fail("too many slice indices")
    seq: Any = item.encode() if isinstance(item, str) else item  # strings slice by byte, as in Go
    idx = [_int(i, "slice") for i in indices]
    bounds = [idx[0] if idx else 0, idx[1] if len(idx) > 1 else len(seq), *idx[2:]]
    for lo, hi in zip([0, *bounds], [*bounds, len(seq)], strict=True):
        if lo > hi:
            raise _Fail(f"invalid slice index: {lo} > {hi}")
    out = seq[bounds[0]:bounds[1]]
    return out.decode("utf-8", "replace") if isinstance(item, str) else list(out)


def _print(*args: Any) -> str:
    # fmt.Sprint puts a space between operands only when neither is a string.
    return "".join((" " if i and not isinstance(a, str) and not isinstance(args[i - 1], str) else "") + _fmt(a)
                   for i, a in enumerate(args))


def _printf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise _Fail(f"printf format must be a string, not {_go_type(fmt)}")
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
            return _fmt(v)
        if c == "q" and isinstance(v, str):  # JSON quoting equals Go's for printable text
            return json.dumps(v, ensure_ascii=False)
        if c == "q" and is_int:
            return repr(chr(v)) if 0 <= v <= 0x10FFFF else "'\ufffd'"
        return f"%!{c}({_go_type(v)}={_fmt(v)})"  # Go's in-band report of a wrong verb

    out = re.sub(r"%(.?)", verb, fmt, flags=re.S)
    extra = ", ".join(f"{_go_type(a)}={_fmt(a)}" for a in args[used:])
    return out + (f"%!(EXTRA {extra})" if extra else "")


def _date(days: int) -> Any:
    # Ollama accepts (and ignores) a format argument.
    return lambda *_: (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


# name -> (function, min args, max args or None, lazy). Ollama adds json, currentDate, yesterdayDate.
_FUNCS: dict[str, tuple[Any, int, int | None, bool]] = {
    "and": (lambda *t: _and_or(False, *t), 1, None, True), "or": (lambda *t: _and_or(True, *t), 1, None, True),
    "not": (lambda v: not _truth(v), 1, 1, False), "eq": (_eq, 2, None, False),
    "ne": (lambda a, b: not _eq(a, b), 2, 2, False), "lt": (_less, 2, 2, False),
    "le": (lambda a, b: _less(a, b) or _eq(a, b), 2, 2, False),
    "gt": (lambda a, b: not (_less(a, b) or _eq(a, b)), 2, 2, False),
    "ge": (lambda a, b: not _less(a, b), 2, 2, False), "len": (_len, 1, 1, False),
    "index": (_index, 1, None, False), "slice": (_slice, 1, None, False), "print": (_print, 0, None, False),
    "printf": (_printf, 1, None, False), "json": (_go_json, 1, 1, False),
    "currentDate": (_date(0), 0, None, False), "yesterdayDate": (_date(-1), 0, None, False),
}


# --- lexer ----------------------------------------------------------------------------------------

class _Tok(NamedTuple):
    kind: str  # field var dot ident const nil ( ) | , := =
    val: Any
    space: bool  # whitespace before it: `.A.B` is one chain, `.A .B` two operands
    text: str


_TOKEN_RE = re.compile(r"""
    (?P<string>"(?:[^"\\\n]|\\.)*") | (?P<raw>`[^`]*`) | (?P<char>'(?:[^'\\\n]|\\[^\n])+')
  | (?P<op>:=|[=,|()]) | (?P<var>\$\w*) | (?P<field>\.[^\W\d]\w*)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+
                     |(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
  | (?P<dot>\.) | (?P<ident>[^\W\d]\w*)
""", re.X)
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(body: str, quote: str) -> str:
    out, pos = bytearray(), 0  # \x and octal escapes are bytes in Go: collect bytes, decode once
    for m in _ESCAPE_RE.finditer(body):
        out += body[pos:m.start()].encode()
        e, pos = m.group(1), m.end()
        if e[0] in "xuU" and len(e) > 1 and int(e[1:], 16) <= 0x10FFFF:
            out += bytes([int(e[1:], 16)]) if e[0] == "x" else chr(int(e[1:], 16)).encode("utf-8", "replace")
        elif len(e) == 3 and int(e, 8) < 256:
            out += bytes([int(e, 8)])
        elif e in _ESCAPES or e == quote:
            out += _ESCAPES.get(e, e).encode()
        else:
            raise _Fail(f"invalid escape \\{e} in quoted string")
    return (out + body[pos:].encode()).decode("utf-8", "replace")


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)  # Go reads a leading 0 as octal
    try:
        return int(t, 0) if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)", t) else float(t)
    except ValueError:
        raise _Fail(f"bad number syntax: {text!r}") from None


def _lex(src: str) -> list[tuple[str, Any, int]]:
    """Split into ("text", str, line) and ("action", [_Tok], line), applying trim markers."""
    items: list[tuple[str, Any, int]] = []
    pos, trim_next = 0, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        # "{{- " trims only with a space after the dash: "{{-3}}" is the number -3.
        left_trim = start >= 0 and src[start + 2:start + 3] == "-" and src[start + 3:start + 4] in [*_SPACE]
        text = text.lstrip(_SPACE) if trim_next else text
        text = text.rstrip(_SPACE) if left_trim else text
        if text:
            items.append(("text", text, src.count("\n", 0, pos) + 1))
        if start < 0:
            return items
        line, p = src.count("\n", 0, start) + 1, start + (4 if left_trim else 2)
        if not src.startswith("/*", p):
            toks, pos, trim_next = _lex_action(src, p, line)
            items.append(("action", toks, line))
            continue
        close = src.find("*/", p + 2)
        if close < 0:
            raise TemplateError(f"template: line {line}: unclosed comment")
        trim_next = src[close + 2:close + 3] in [*_SPACE] and src.startswith("-}}", close + 3)
        if not (trim_next or src.startswith("}}", close + 2)):
            raise TemplateError(f"template: line {line}: comment ends before closing delimiter")
        pos = close + (6 if trim_next else 4)


def _lex_action(src: str, p: int, line: int) -> tuple[list[_Tok], int, bool]:
    toks: list[_Tok] = []
    space = True
    while p < len(src):
        if src.startswith("}}", p):
            return toks, p + 2, False
        if src[p] in _SPACE:
            while p < len(src) and src[p] in _SPACE:
                p += 1
            if src.startswith("-}}", p):  # " -}}" trims, but "-" needs the space before it
                return toks, p + 3, True
            space = True
            continue
        m = _TOKEN_RE.match(src, p)
        if m is None:
            what = {'"': "unterminated quoted string", "`": "unterminated raw quoted string",
                    "'": "unterminated character constant"}.get(src[p], f"unexpected {src[p]!r} in action")
            raise TemplateError(f"template: line {line}: {what}")
        kind, text, p = m.lastgroup or "", m.group(), m.end()
        if kind == "number" and p < len(src) and (src[p].isalnum() or src[p] == "."):
            raise TemplateError(f"template: line {line}: bad number syntax: {text + src[p]!r}")
        val: Any = text[1:] if kind == "field" else text
        try:
            if kind in ("string", "raw", "char", "number"):
                val = (_number(text) if kind == "number" else text[1:-1] if kind == "raw"
                       else _unquote(text[1:-1], text[0]))
                if kind == "char" and len(val) != 1:
                    raise _Fail(f"malformed character constant {text}")
                kind, val = "const", ord(val) if kind == "char" else val
        except _Fail as e:
            raise TemplateError(f"template: line {line}: {e}") from None
        if kind == "ident" and text in ("true", "false", "nil"):
            kind, val = ("nil", None) if text == "nil" else ("const", text == "true")
        toks.append(_Tok(text if kind == "op" else kind, val, space, text))
        space = False
    raise TemplateError(f"template: line {line}: unclosed action")


# --- parser ---------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Arg:
    """An operand: field, var, dot, const, nil, func or sub (a parenthesized pipeline)."""

    kind: str
    value: Any = None  # variable/function name, constant, or the sub-pipeline
    names: tuple[str, ...] = ()  # a .Field chain applied to the operand's value


@dataclass(slots=True)
class _Pipe:
    decl: list[str]  # $x := / $x = / (range only) $i, $x :=
    assign: bool
    cmds: list[list[_Arg]]


@dataclass(slots=True)
class _Node:
    """text, action, if, range, with, break or continue."""

    kind: str
    line: int
    text: str = ""
    pipe: _Pipe | None = None
    body: list[_Node] = field(default_factory=list)
    else_: list[_Node] | None = None


class _Parser:
    def __init__(self, src: str) -> None:
        self.items, self.i = _lex(src), 0
        self.toks: list[_Tok] = []
        self.k, self.line, self.depth, self.ranges = 0, 1, 0, 0
        self.vars = ["$"]  # declared variables in scope: Go rejects undefined ones at parse time

    def error(self, msg: str) -> TemplateError:
        return TemplateError(f"template: line {self.line}: {msg}")

    def peek(self, ahead: int = 0) -> _Tok | None:
        return self.toks[self.k + ahead] if self.k + ahead < len(self.toks) else None

    def expect_end(self, what: str) -> None:
        if (t := self.peek()) is not None:
            raise self.error(f"unexpected {t.text!r} in {what}")

    def nest(self, step: int) -> None:
        self.depth += step
        if self.depth > MAX_NESTING:
            raise self.error("template nests too deeply")

    def parse(self) -> list[_Node]:
        nodes, end = self.parse_list()
        if end is not None:
            raise self.error(f"unexpected {{{{{end}}}}}")
        return nodes

    def parse_list(self) -> tuple[list[_Node], str | None]:
        """Nodes up to an unmatched {{end}} or {{else}}, which is returned (None at EOF)."""
        nodes: list[_Node] = []
        while self.i < len(self.items):
            kind, payload, self.line = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Node("text", self.line, payload))
                continue
            self.toks, self.k = payload, 0
            first = self.peek()
            if first is None:
                raise self.error("missing value for command")
            if first.kind != "ident" or first.val not in _KEYWORDS:
                nodes.append(_Node("action", self.line, pipe=self.pipeline("command")))
                self.expect_end("command")
                continue
            self.k = 1
            if first.val in ("end", "else"):
                if first.val == "end":
                    self.expect_end("end")
                return nodes, first.val
            if first.val in ("break", "continue"):
                if not self.ranges:
                    raise self.error(f"{{{{{first.val}}}}} outside {{{{range}}}}")
                self.expect_end(first.val)
                nodes.append(_Node(first.val, self.line))
            elif first.val in ("if", "range", "with"):
                nodes.append(self.branch(first.val))
            else:
                raise self.error(f"{{{{{first.val}}}}} is not supported")
        return nodes, None

    def branch(self, kw: str) -> _Node:
        line, mark = self.line, len(self.vars)
        self.nest(1)
        pipe = self.pipeline(kw)
        self.expect_end(kw)
        self.ranges += kw == "range"
        body_mark = len(self.vars)
        body, end = self.parse_list()
        del self.vars[body_mark:]  # the else branch sees the pipeline's variables, not the body's
        self.ranges -= kw == "range"
        else_: list[_Node] | None = None
        if end == "else":
            nxt = self.peek()
            if kw != "range" and nxt is not None and nxt.kind == "ident" and nxt.val == kw:
                self.k += 1
                else_, end = [self.branch(kw)], "end"  # `else if` nests an if that shares this {{end}}
            else:
                self.expect_end("else")
                else_, end = self.parse_list()
        if end != "end":
            raise self.error(f"unexpected {'EOF' if end is None else '{{else}}'} in {{{{{kw}}}}}")
        del self.vars[mark:]
        self.nest(-1)
        return _Node(kw, line, pipe=pipe, body=body, else_=else_)

    def pipeline(self, context: str) -> _Pipe:
        decl: list[str] = []
        t, op = self.peek(), self.peek(1)
        if t is not None and t.kind == "var" and op is not None and op.kind in (":=", "=", ","):
            decl = [t.val]
            if op.kind == ",":
                second, op = self.peek(2), self.peek(3)
                if context != "range":
                    raise self.error(f"too many declarations in {context}")
                if second is None or second.kind != "var" or op is None or op.kind not in (":=", "="):
                    raise self.error("range can only initialize variables")
                decl.append(second.val)
            self.k += 2 * len(decl)
        cmds = [self.command(context)]
        while (t := self.peek()) is not None and t.kind == "|":
            self.k += 1
            cmds.append(self.command("pipeline"))
            if cmds[-1][0].kind in ("const", "dot", "nil"):
                raise self.error(f"non executable command in pipeline stage {len(cmds)}")
        assign = bool(decl) and op is not None and op.kind == "="
        for name in decl:
            if assign and name not in self.vars:
                raise self.error(f"undefined variable {name!r}")
            self.vars += [] if assign else [name]
        return _Pipe(decl, assign, cmds)

    def command(self, context: str) -> list[_Arg]:
        args: list[_Arg] = []
        while (t := self.peek()) is not None and t.kind not in ("|", ")"):
            if args and not t.space:
                raise self.error(f"unexpected {t.text!r} in operand")
            args.append(self.operand())
        if not args:
            raise self.error(f"missing value for {context}")
        return args

    def operand(self) -> _Arg:
        t = self.toks[self.k]
        self.k += 1
        if t.kind in ("field", "dot", "const", "nil"):
            arg = _Arg(t.kind, t.val, (t.val,) if t.kind == "field" else ())
        elif t.kind == "var":
            if t.val not in self.vars:
                raise self.error(f"undefined variable {t.val!r}")
            arg = _Arg("var", t.val)
        elif t.kind == "ident":
            if t.val not in _FUNCS:
                raise self.error(f"unexpected {t.val!r} in operand" if t.val in _KEYWORDS
                                 else f"function {t.val!r} not defined")
            arg = _Arg("func", t.val)
        elif t.kind == "(":
            self.nest(1)
            arg = _Arg("sub", self.pipeline("parenthesized pipeline"))
            if (close := self.peek()) is None or close.kind != ")":
                raise self.error("unclosed left paren")
            self.k += 1
            self.nest(-1)
        else:
            raise self.error(f"unexpected {t.text!r} in operand")
        while (n := self.peek()) is not None and n.kind == "field" and not n.space:
            if arg.kind not in ("field", "var", "sub"):
                raise self.error(f"unexpected {n.text} after {t.text!r}")
            arg.names, self.k = (*arg.names, n.val), self.k + 1
        return arg


# --- execution ------------------------------------------------------------------------------------

def _field(v: Any, name: str) -> Any:
    if isinstance(v, _Struct):
        if name not in v.fields:
            raise _Fail(f"can't evaluate field {name} in type {v.name}")
        return v.fields[name]
    if isinstance(v, dict):
        return v.get(name)  # a missing map key is nil, printed as "<no value>"
    raise _Fail(f"nil pointer evaluating interface {{}}.{name}" if v is None
                else f"can't evaluate field {name} in type {_go_type(v)}")


class _Exec:
    def __init__(self, root: Any) -> None:
        self.out: list[str] = []
        self.size = self.steps = 0
        self.vars: list[list[Any]] = [["$", root]]

    def write(self, s: str) -> None:
        self.size += len(s.encode())
        if self.size > MAX_OUTPUT_BYTES:
            raise TemplateError(f"template output exceeds {MAX_OUTPUT_BYTES} bytes")
        self.out.append(s)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateError(f"template execution exceeds {MAX_STEPS} steps")

    def walk(self, nodes: list[_Node], dot: Any) -> None:
        for n in nodes:
            self.tick()
            if n.kind == "text":
                self.write(n.text)
            elif n.kind in ("break", "continue"):
                raise _Jump(n.kind)
            else:
                try:
                    self.node(n, dot)
                except _Fail as e:
                    raise TemplateError(f"template: line {n.line}: {e}") from None

    def node(self, n: _Node, dot: Any) -> None:
        assert n.pipe is not None
        mark = len(self.vars)  # variables declared in a block's pipeline or body die at its {{end}}
        val = self.pipe(n.pipe, dot)
        if n.kind == "action":
            if not n.pipe.decl:
                self.write("<no value>" if val is None else _fmt(val))
            return
        try:
            if n.kind == "range":
                self.range(n, val, dot)
            elif _truth(val):
                self.walk(n.body, val if n.kind == "with" else dot)
            elif n.else_ is not None:
                self.walk(n.else_, dot)
        finally:
            del self.vars[mark:]

    def range(self, n: _Node, val: Any, dot: Any) -> None:
        assert n.pipe is not None
        items: Any
        if val is None or isinstance(val, (list, tuple, dict)):
            items = _items(val) if isinstance(val, dict) else enumerate(val or ())
        elif isinstance(val, int) and not isinstance(val, bool) and len(n.pipe.decl) < 2:
            items = ((i, i) for i in range(min(val, MAX_STEPS + 1)))  # Go 1.22 ranges over ints
        else:
            raise _Fail(f"range can't iterate over {_fmt(val)}")
        decl, inner, ran = n.pipe.decl, len(self.vars), False
        for key, elem in items:
            ran = True
            self.tick()
            for j, value in enumerate((key, elem)[2 - len(decl):] if decl else ()):
                if n.pipe.assign:
                    self.set_var(decl[j], value)
                else:
                    self.vars[inner - len(decl) + j][1] = value
            try:
                self.walk(n.body, elem)
            except _Jump as jump:
                if str(jump) == "break":
                    break
            finally:
                del self.vars[inner:]
        if not ran and n.else_ is not None:
            self.walk(n.else_, dot)

    def slot(self, name: str) -> list[Any]:
        for slot in reversed(self.vars):
            if slot[0] == name:
                return slot
        raise _Fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        self.slot(name)[1] = value

    def pipe(self, p: _Pipe, dot: Any) -> Any:
        val = _MISSING
        for cmd in p.cmds:
            val = self.command(cmd, dot, val)
        for name in p.decl:
            if p.assign:
                self.set_var(name, val)
            else:
                self.vars.append([name, val])
        return val

    def command(self, cmd: list[_Arg], dot: Any, final: Any) -> Any:
        if cmd[0].kind == "func":
            return self.call(cmd[0].value, cmd[1:], dot, final)
        if cmd[0].kind == "nil":
            raise _Fail("nil is not a command")
        if len(cmd) > 1 or final is not _MISSING:
            raise _Fail(f"can't give argument to non-function {cmd[0].kind}")
        return self.arg(cmd[0], dot)

    def arg(self, a: _Arg, dot: Any) -> Any:
        if a.kind in ("const", "nil"):
            return a.value
        if a.kind == "func":
            return self.call(a.value, [], dot, _MISSING)
        v = dot if a.kind in ("dot", "field") else self.pipe(a.value, dot) if a.kind == "sub" else self.slot(
            a.value)[1]
        for name in a.names:
            v = _field(v, name)
        return v

    def call(self, name: str, args: list[_Arg], dot: Any, final: Any) -> Any:
        fn, lo, hi, lazy = _FUNCS[name]
        count = len(args) + (final is not _MISSING)
        if count < lo or (hi is not None and count > hi):
            want = lo if lo == hi else f"at least {lo}" if hi is None else f"at most {hi}"
            raise _Fail(f"wrong number of args for {name}: want {want} got {count}")
        if lazy:
            values = [lambda a=a: self.arg(a, dot) for a in args] + ([lambda: final] if count > len(args) else [])
        else:
            values = [self.arg(a, dot) for a in args] + ([final] if count > len(args) else [])
        result = fn(*values)
        if isinstance(result, str) and len(result) > MAX_OUTPUT_BYTES:
            raise TemplateError(f"{name} result exceeds {MAX_OUTPUT_BYTES} bytes")
        return result


def _execute(nodes: list[_Node], data: Any) -> str:
    ex = _Exec(data)
    try:
        ex.walk(nodes, data)
    except RecursionError:  # deeply nested data (e.g. tool arguments) reaching json/print
        raise TemplateError("template data nests too deeply") from None
    return "".join(ex.out)


def is_go_template(text: str) -> bool:
    """True for Go-template text: has a {{ }} action and no Jinja {% %} block."""
    return bool(re.search(r"\{\{.*?\}\}", text, re.S)) and not re.search(r"\{%.*?%\}", text, re.S)


def render(template: str, data: dict[str, Any]) -> str:
    """Render against plain data: dict keys are Go map keys, so `.System` reads data["System"]."""
    return _execute(_Parser(template).parse(), data)


# --- Ollama's prompt data -------------------------------------------------------------------------

def _tags(spec: str) -> dict[str, tuple[str, bool]]:
    """ "Go:json Go:json?" (? = omitempty) -> tag table, mirroring Ollama's Go struct declarations."""
    pairs = (item.split(":", 1) for item in spec.split())
    return {go: (js.rstrip("?"), js.endswith("?")) for go, js in pairs}


_TOOL_TAGS = _tags("Type:type Items:items? Function:function")
_FUNCTION_TAGS = _tags("Name:name Description:description Parameters:parameters")
_PARAMS_TAGS = _tags("Type:type Defs:$defs? Items:items? Required:required? Properties:properties")
_PROP_TAGS = _tags("AnyOf:anyOf? Type:type? Items:items? Description:description? Enum:enum? "
                   "Properties:properties? Required:required?")


def _prop(p: Any) -> Any:
    if not isinstance(p, dict):
        return p
    kind, nested = p.get("type"), p.get("properties")
    if isinstance(kind, list) and len(kind) == 1:
        kind = kind[0]  # Ollama's PropertyType prints and encodes a single type as a plain string
    return _Struct("api.ToolProperty", {
        "AnyOf": [_prop(x) for x in p.get("anyOf") or []] or None, "Type": kind or "",
        "Items": p.get("items"), "Description": p.get("description") or "", "Enum": p.get("enum") or None,
        "Properties": _GoMap({k: _prop(v) for k, v in nested.items()}, ordered=True)
        if isinstance(nested, dict) else None, "Required": p.get("required") or None}, _PROP_TAGS)


def _tool(t: dict[str, Any]) -> _Struct:
    fn = t.get("function") or {}
    params = fn.get("parameters") or {}
    props = params.get("properties")
    parameters = _Struct("templateToolFunctionParameters", {
        "Type": params.get("type") or "", "Defs": params.get("$defs"), "Items": params.get("items"),
        "Required": params.get("required") or None,
        "Properties": _GoMap({k: _prop(v) for k, v in props.items()}) if isinstance(props, dict)
        else _GoMap(nil=True)}, _PARAMS_TAGS)
    function = _Struct("templateToolFunction", {"Name": fn.get("name") or "", "Description": fn.get(
        "description") or "", "Parameters": parameters}, _FUNCTION_TAGS)  # field order is JSON order
    return _Struct("templateTool", {"Type": t.get("type") or "", "Items": t.get("items"), "Function": function},
                   _TOOL_TAGS, stringer=True)


def _tool_call(c: dict[str, Any]) -> _Struct:
    fn = c.get("function") or {}
    args = fn.get("arguments") or {}
    if isinstance(args, str):  # OpenAI-style clients send the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            raise TemplateError(f"tool call arguments are not JSON: {args[:80]!r}") from None
    if not isinstance(args, dict):
        raise TemplateError("tool call arguments must be a JSON object")
    function = _Struct("templateToolCallFunction", {"Index": fn.get("index") or 0, "Name": fn.get("name") or "",
                                                    "Arguments": _GoMap(args)})
    return _Struct("templateToolCall", {"ID": c.get("id") or "", "Function": function})


def _message(m: dict[str, Any]) -> _Struct:
    calls = [_tool_call(c) for c in m.get("tool_calls") or []]
    return _Struct("templateMessage", {
        "Role": m.get("role") or "", "Content": m.get("content") or "", "Thinking": m.get("thinking") or "",
        "Images": m.get("images") or None, "ToolCalls": calls or None,
        "ToolName": m.get("tool_name") or "", "ToolCallID": m.get("tool_call_id") or ""})


def _identifiers(nodes: list[_Node], out: set[str]) -> set[str]:
    """Lower-cased field and variable names: Ollama picks its rendering mode from these."""
    def pipe(p: _Pipe) -> None:
        for arg in (a for cmd in p.cmds for a in cmd):
            if arg.kind == "sub":
                pipe(arg.value)
            out.update(n.lower() for n in ((arg.value, *arg.names) if arg.kind == "var" else arg.names))

    for n in nodes:
        if n.pipe is not None:
            pipe(n.pipe)
        _identifiers(n.body + (n.else_ or []), out)
    return out


def _cut_after_response(nodes: list[_Node]) -> list[_Node]:
    """Everything up to the first {{ .Response }}: Ollama renders the turn being generated this way,
    so e.g. ChatML ends with "assistant\\n" rather than closing the reply with <|im_end|>."""
    cut = False

    def walk(ns: list[_Node]) -> list[_Node]:
        nonlocal cut
        out: list[_Node] = []
        for n in ns:
            if cut:
                break
            if n.kind == "action" and n.pipe is not None:
                cmds: list[list[_Arg]] = []
                for cmd in n.pipe.cmds:
                    args = []
                    for a in cmd:
                        if not cut:
                            args.append(a)
                            cut = a.kind == "field" and "Response" in a.names
                    if not args:  # like Ollama, a stage left empty drops the whole action
                        break
                    cmds.append(args)
                if len(cmds) < len(n.pipe.cmds):
                    continue
                n = _Node("action", n.line, pipe=_Pipe(n.pipe.decl, n.pipe.assign, cmds))
            elif n.kind in ("if", "range", "with"):
                body = walk(n.body)
                n = _Node(n.kind, n.line, pipe=n.pipe, body=body,
                          else_=None if cut or n.else_ is None else walk(n.else_))
            out.append(n)
        return out

    return walk(nodes)


def _collate(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama merges consecutive same-role messages (not tool results) and joins all system text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1].get("role") == m.get("role") and m.get("role") != "tool":
            out[-1] = {**out[-1], "content": f"{out[-1].get('content') or ''}\n\n{m.get('content') or ''}"}
        else:
            out.append(m)
    return "\n\n".join(m.get("content") or "" for m in messages if m.get("role") == "system"), out


def render_prompt(template: str, *, system: str | None, prompt: str | None = None,
                  messages: list[dict[str, Any]] | None = None, tools: list[dict[str, Any]] | None = None,
                  response: str = "", think: bool | str | None = None) -> str:
    """Render a model TEMPLATE the way Ollama's /api/generate and /api/chat do.

    `system` (the model's default) leads the conversation unless `messages` starts with a system
    message; `prompt` and a non-empty `response` are appended as user and assistant turns. A
    template that uses `.Messages` sees the whole conversation at once; an older one runs once per
    turn with `.System`/`.Prompt`/`.Response`, and the last turn stops right after `{{ .Response }}`
    so the model continues the assistant reply.
    """
    nodes = _Parser(template).parse()
    names = _identifiers(nodes, set())
    msgs = [dict(m) for m in messages or []]
    if system and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": system})
    msgs += [{"role": "user", "content": prompt}] if prompt is not None else []
    msgs += [{"role": "assistant", "content": response}] if response else []
    system_text, msgs = _collate(msgs)
    flags = {"Think": think in ("high", "medium", "low", "max") if isinstance(think, str) else bool(think),
             "ThinkLevel": think if isinstance(think, str) else "medium" if think else "",
             "IsThinkSet": think is not None}
    if "messages" in names:
        return _execute(nodes, {
            "System": system_text, "Messages": [_message(m) for m in msgs], "Response": "",
            "Tools": _GoList(_tool(t) for t in tools) if tools is not None else _GoList(nil=True), **flags})

    if "response" not in names:  # Ollama appends {{ .Response }} to templates that never print it
        nodes = [*nodes, _Node("action", 0, pipe=_Pipe([], False, [[_Arg("field", "Response", ("Response",))]]))]
    out: list[str] = []
    turn = dict.fromkeys(("System", "Prompt", "Response"), "")
    for m in msgs:
        role, content = m.get("role"), m.get("content") or ""
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (role == "user" and turn["Response"]):
            out.append(_execute(nodes, {**turn, **flags}))  # a finished earlier turn, rendered in full
            turn = dict.fromkeys(turn, "")
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(str(role))
        if key:
            turn[key] = content
    out.append(_execute(_cut_after_response(nodes), {**turn, **flags}))
    if sum(len(s.encode()) for s in out) > MAX_OUTPUT_BYTES:
        raise TemplateError(f"template output exceeds {MAX_OUTPUT_BYTES} bytes")
    return "".join(out)
