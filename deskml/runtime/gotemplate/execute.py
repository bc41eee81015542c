"""Running a parsed template against data, within the package's output and work caps."""

from __future__ import annotations

from typing import Any

from .common import Fail, TemplateError, limit
from .funcs import FUNCS
from .parser import Arg, Node, Pipe
from .values import Struct, format_value, go_type, map_items, truth

_MISSING: Any = object()  # "nothing piped in", which differs from a piped nil


class _Jump(Exception):
    """{{break}} or {{continue}} unwinding to the innermost range."""


def _field(v: Any, name: str) -> Any:
    if isinstance(v, Struct):
        if name not in v.fields:
            raise Fail(f"can't evaluate field {name} in type {v.name}")
        return v.fields[name]
    if isinstance(v, dict):
        return v.get(name)  # a missing map key is nil, printed as "<no value>"
    raise Fail(f"nil pointer evaluating interface {{}}.{name}" if v is None
               else f"can't evaluate field {name} in type {go_type(v)}")


class _Exec:
    def __init__(self, root: Any) -> None:
        self.out: list[str] = []
        self.size = self.steps = 0
        self.vars: list[list[Any]] = [["$", root]]
        self.max_output, self.max_steps = limit("MAX_OUTPUT_BYTES"), limit("MAX_STEPS")

    def write(self, s: str) -> None:
        self.size += len(s.encode())
        if self.size > self.max_output:
            raise TemplateError(f"template output exceeds {self.max_output} bytes")
        self.out.append(s)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise TemplateError(f"template execution exceeds {self.max_steps} steps")

    def walk(self, nodes: list[Node], dot: Any) -> None:
        for n in nodes:
            self.tick()
            if n.kind == "text":
                self.write(n.text)
            elif n.kind in ("break", "continue"):
                raise _Jump(n.kind)
            else:
                try:
                    self.node(n, dot)
                except Fail as e:
                    raise TemplateError(f"template: line {n.line}: {e}") from None

    def node(self, n: Node, dot: Any) -> None:
        assert n.pipe is not None
        mark = len(self.vars)  # variables declared in a block's pipeline or body die at its {{end}}
        val = self.pipe(n.pipe, dot)
        if n.kind == "action":
            if not n.pipe.decl:
                self.write("<no value>" if val is None else format_value(val))
            return
        try:
            if n.kind == "range":
                self.range(n, val, dot)
            elif truth(val):
                self.walk(n.body, val if n.kind == "with" else dot)
            elif n.else_ is not None:
                self.walk(n.else_, dot)
        finally:
            del self.vars[mark:]

    def range(self, n: Node, val: Any, dot: Any) -> None:
        assert n.pipe is not None
        items: Any
        if val is None or isinstance(val, (list, tuple, dict)):
            items = map_items(val) if isinstance(val, dict) else enumerate(val or ())
        elif isinstance(val, int) and not isinstance(val, bool) and len(n.pipe.decl) < 2:
            items = ((i, i) for i in range(min(val, self.max_steps + 1)))  # Go 1.22 ranges over ints
        else:
            raise Fail(f"range can't iterate over {format_value(val)}")
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
        # a slice, not reversed(): mypy's reversed() overloads turn a list of Any-holding lists into Any
        for slot in self.vars[::-1]:
            if slot[0] == name:
                return slot
        raise Fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        self.slot(name)[1] = value

    def pipe(self, p: Pipe, dot: Any) -> Any:
        val = _MISSING
        for cmd in p.cmds:
            val = self.command(cmd, dot, val)
        for name in p.decl:
            if p.assign:
                self.set_var(name, val)
            else:
                self.vars.append([name, val])
        return val

    def command(self, cmd: list[Arg], dot: Any, final: Any) -> Any:
        if cmd[0].kind == "func":
            return self.call(cmd[0].value, cmd[1:], dot, final)
        if cmd[0].kind == "nil":
            raise Fail("nil is not a command")
        if len(cmd) > 1 or final is not _MISSING:
            raise Fail(f"can't give argument to non-function {cmd[0].kind}")
        return self.arg(cmd[0], dot)

    def arg(self, a: Arg, dot: Any) -> Any:
        if a.kind in ("const", "nil"):
            return a.value
        if a.kind == "func":
            return self.call(a.value, [], dot, _MISSING)
        v = dot if a.kind in ("dot", "field") else self.pipe(a.value, dot) if a.kind == "sub" else self.slot(
            a.value)[1]
        for name in a.names:
            v = _field(v, name)
        return v

    def call(self, name: str, args: list[Arg], dot: Any, final: Any) -> Any:
        fn, lo, hi, lazy = FUNCS[name]
        count = len(args) + (final is not _MISSING)
        if count < lo or (hi is not None and count > hi):
            want = lo if lo == hi else f"at least {lo}" if hi is None else f"at most {hi}"
            raise Fail(f"wrong number of args for {name}: want {want} got {count}")
        if lazy:
            values = [lambda a=a: self.arg(a, dot) for a in args] + ([lambda: final] if count > len(args) else [])
        else:
            values = [self.arg(a, dot) for a in args] + ([final] if count > len(args) else [])
        result = fn(*values)
        if isinstance(result, str) and len(result) > self.max_output:
            raise TemplateError(f"{name} result exceeds {self.max_output} bytes")
        return result


def execute(nodes: list[Node], data: Any) -> str:
    ex = _Exec(data)
    try:
        ex.walk(nodes, data)
    except RecursionError:  # deeply nested data (e.g. tool arguments) reaching json/print
        raise TemplateError("template data nests too deeply") from None
    return "".join(ex.out)

