"""Splitting template text into literal text and the tokens of each {{ action }}."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .common import Fail, TemplateError

_SPACE = " \t\r\n"


class Tok(NamedTuple):
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
            raise Fail(f"invalid escape \\{e} in quoted string")
    return (out + body[pos:].encode()).decode("utf-8", "replace")


def _number(text: str) -> int | float:
    t = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", t):
        return int(t, 8)  # Go reads a leading 0 as octal
    try:
        return int(t, 0) if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|\d+)", t) else float(t)
    except ValueError:
        raise Fail(f"bad number syntax: {text!r}") from None


def lex(src: str) -> list[tuple[str, Any, int]]:
    """Split into ("text", str, line) and ("action", [Tok], line), applying trim markers."""
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


def _lex_action(src: str, p: int, line: int) -> tuple[list[Tok], int, bool]:
    toks: list[Tok] = []
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
                    raise Fail(f"malformed character constant {text}")
                kind, val = "const", ord(val) if kind == "char" else val
        except Fail as e:
            raise TemplateError(f"template: line {line}: {e}") from None
        if kind == "ident" and text in ("true", "false", "nil"):
            kind, val = ("nil", None) if text == "nil" else ("const", text == "true")
        toks.append(Tok(text if kind == "op" else kind, val, space, text))
        space = False
    raise TemplateError(f"template: line {line}: unclosed action")

