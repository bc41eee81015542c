"""Parsing lexed actions into a tree of nodes, with the checks Go makes before running anything.

Undefined variables and functions, misplaced {{break}}/{{continue}} and unsupported keywords
({{define}}, {{template}}, {{block}}) are rejected here, so execution only meets data errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .common import TemplateError, limit
from .funcs import FUNCS
from .lexer import Tok, lex

_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"})


@dataclass(slots=True)
class Arg:
    """An operand: field, var, dot, const, nil, func or sub (a parenthesized pipeline)."""

    kind: str
    value: Any = None  # variable/function name, constant, or the sub-pipeline
    names: tuple[str, ...] = ()  # a .Field chain applied to the operand's value


@dataclass(slots=True)
class Pipe:
    decl: list[str]  # $x := / $x = / (range only) $i, $x :=
    assign: bool
    cmds: list[list[Arg]]


@dataclass(slots=True)
class Node:
    """text, action, if, range, with, break or continue."""

    kind: str
    line: int
    text: str = ""
    pipe: Pipe | None = None
    body: list[Node] = field(default_factory=list)
    else_: list[Node] | None = None


class Parser:
    def __init__(self, src: str) -> None:
        self.items, self.i = lex(src), 0
        self.toks: list[Tok] = []
        self.k, self.line, self.depth, self.ranges = 0, 1, 0, 0
        self.vars = ["$"]  # declared variables in scope: Go rejects undefined ones at parse time
        self.max_nesting = limit("MAX_NESTING")

    def error(self, msg: str) -> TemplateError:
        return TemplateError(f"template: line {self.line}: {msg}")

    def peek(self, ahead: int = 0) -> Tok | None:
        return self.toks[self.k + ahead] if self.k + ahead < len(self.toks) else None

    def expect_end(self, what: str) -> None:
        if (t := self.peek()) is not None:
            raise self.error(f"unexpected {t.text!r} in {what}")

    def nest(self, step: int) -> None:
        self.depth += step
        if self.depth > self.max_nesting:
            raise self.error("template nests too deeply")

    def parse(self) -> list[Node]:
        nodes, end = self.parse_list()
        if end is not None:
            raise self.error(f"unexpected {{{{{end}}}}}")
        return nodes

    def parse_list(self) -> tuple[list[Node], str | None]:
        """Nodes up to an unmatched {{end}} or {{else}}, which is returned (None at EOF)."""
        nodes: list[Node] = []
        while self.i < len(self.items):
            kind, payload, self.line = self.items[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(Node("text", self.line, payload))
                continue
            self.toks, self.k = payload, 0
            first = self.peek()
            if first is None:
                raise self.error("missing value for command")
            if first.kind != "ident" or first.val not in _KEYWORDS:
                nodes.append(Node("action", self.line, pipe=self.pipeline("command")))
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
                nodes.append(Node(first.val, self.line))
            elif first.val in ("if", "range", "with"):
                nodes.append(self.branch(first.val))
            else:
                raise self.error(f"{{{{{first.val}}}}} is not supported")
        return nodes, None

    def branch(self, kw: str) -> Node:
        line, mark = self.line, len(self.vars)
        self.nest(1)
        pipe = self.pipeline(kw)
        self.expect_end(kw)
        self.ranges += kw == "range"
        body_mark = len(self.vars)
        body, end = self.parse_list()
        del self.vars[body_mark:]  # the else branch sees the pipeline's variables, not the body's
        self.ranges -= kw == "range"
        else_: list[Node] | None = None
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
        return Node(kw, line, pipe=pipe, body=body, else_=else_)

    def pipeline(self, context: str) -> Pipe:
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
        return Pipe(decl, assign, cmds)

    def command(self, context: str) -> list[Arg]:
        args: list[Arg] = []
        while (t := self.peek()) is not None and t.kind not in ("|", ")"):
            if args and not t.space:
                raise self.error(f"unexpected {t.text!r} in operand")
            args.append(self.operand())
        if not args:
            raise self.error(f"missing value for {context}")
        return args

    def operand(self) -> Arg:
        t = self.toks[self.k]
        self.k += 1
        if t.kind in ("field", "dot", "const", "nil"):
            arg = Arg(t.kind, t.val, (t.val,) if t.kind == "field" else ())
        elif t.kind == "var":
            if t.val not in self.vars:
                raise self.error(f"undefined variable {t.val!r}")
            arg = Arg("var", t.val)
        elif t.kind == "ident":
            if t.val not in FUNCS:
                raise self.error(f"unexpected {t.val!r} in operand" if t.val in _KEYWORDS
                                 else f"function {t.val!r} not defined")
            arg = Arg("func", t.val)
        elif t.kind == "(":
            self.nest(1)
            arg = Arg("sub", self.pipeline("parenthesized pipeline"))
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


def parse(src: str) -> list[Node]:
    return Parser(src).parse()
