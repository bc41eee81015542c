"""Ollama's prompt data: how /api/generate and /api/chat lay out .System, .Prompt, .Messages and
.Tools for a model's TEMPLATE, including the per-turn rendering of templates without .Messages.

The Go structs Ollama hands its templates are mirrored field for field (names, order, JSON tags),
because templates print them with %v and json and the output must match Ollama's byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

from .common import TemplateError, limit
from .execute import execute
from .parser import Arg, Node, Pipe, parse
from .values import GoList, GoMap, Struct


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
    return Struct("api.ToolProperty", {
        "AnyOf": [_prop(x) for x in p.get("anyOf") or []] or None, "Type": kind or "",
        "Items": p.get("items"), "Description": p.get("description") or "", "Enum": p.get("enum") or None,
        "Properties": GoMap({k: _prop(v) for k, v in nested.items()}, ordered=True)
        if isinstance(nested, dict) else None, "Required": p.get("required") or None}, _PROP_TAGS)


def _tool(t: dict[str, Any]) -> Struct:
    fn = t.get("function") or {}
    params = fn.get("parameters") or {}
    props = params.get("properties")
    parameters = Struct("templateToolFunctionParameters", {
        "Type": params.get("type") or "", "Defs": params.get("$defs"), "Items": params.get("items"),
        "Required": params.get("required") or None,
        "Properties": GoMap({k: _prop(v) for k, v in props.items()}) if isinstance(props, dict)
        else GoMap(nil=True)}, _PARAMS_TAGS)
    function = Struct("templateToolFunction", {"Name": fn.get("name") or "", "Description": fn.get(
        "description") or "", "Parameters": parameters}, _FUNCTION_TAGS)  # field order is JSON order
    return Struct("templateTool", {"Type": t.get("type") or "", "Items": t.get("items"), "Function": function},
                  _TOOL_TAGS, stringer=True)


def _tool_call(c: dict[str, Any]) -> Struct:
    fn = c.get("function") or {}
    args = fn.get("arguments") or {}
    if isinstance(args, str):  # OpenAI-style clients send the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            raise TemplateError(f"tool call arguments are not JSON: {args[:80]!r}") from None
    if not isinstance(args, dict):
        raise TemplateError("tool call arguments must be a JSON object")
    function = Struct("templateToolCallFunction", {"Index": fn.get("index") or 0, "Name": fn.get("name") or "",
                                                   "Arguments": GoMap(args)})
    return Struct("templateToolCall", {"ID": c.get("id") or "", "Function": function})


def _message(m: dict[str, Any]) -> Struct:
    calls = [_tool_call(c) for c in m.get("tool_calls") or []]
    return Struct("templateMessage", {
        "Role": m.get("role") or "", "Content": m.get("content") or "", "Thinking": m.get("thinking") or "",
        "Images": m.get("images") or None, "ToolCalls": calls or None,
        "ToolName": m.get("tool_name") or "", "ToolCallID": m.get("tool_call_id") or ""})


def _identifiers(nodes: list[Node], out: set[str]) -> set[str]:
    """Lower-cased field and variable names: Ollama picks its rendering mode from these."""
    def pipe(p: Pipe) -> None:
        for arg in (a for cmd in p.cmds for a in cmd):
            if arg.kind == "sub":
                pipe(arg.value)
            out.update(n.lower() for n in ((arg.value, *arg.names) if arg.kind == "var" else arg.names))

    for n in nodes:
        if n.pipe is not None:
            pipe(n.pipe)
        _identifiers(n.body + (n.else_ or []), out)
    return out


def _cut_after_response(nodes: list[Node]) -> list[Node]:
    """Everything up to the first {{ .Response }}: Ollama renders the turn being generated this way,
    so e.g. ChatML ends with "assistant\\n" rather than closing the reply with <|im_end|>."""
    cut = False

    def walk(ns: list[Node]) -> list[Node]:
        nonlocal cut
        out: list[Node] = []
        for n in ns:
            if cut:
                break
            if n.kind == "action" and n.pipe is not None:
                cmds: list[list[Arg]] = []
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
                n = Node("action", n.line, pipe=Pipe(n.pipe.decl, n.pipe.assign, cmds))
            elif n.kind in ("if", "range", "with"):
                body = walk(n.body)
                n = Node(n.kind, n.line, pipe=n.pipe, body=body,
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
    nodes = parse(template)
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
        return execute(nodes, {
            "System": system_text, "Messages": [_message(m) for m in msgs], "Response": "",
            "Tools": GoList(_tool(t) for t in tools) if tools is not None else GoList(nil=True), **flags})

    if "response" not in names:  # Ollama appends {{ .Response }} to templates that never print it
        nodes = [*nodes, Node("action", 0, pipe=Pipe([], False, [[Arg("field", "Response", ("Response",))]]))]
    out: list[str] = []
    turn = dict.fromkeys(("System", "Prompt", "Response"), "")
    for m in msgs:
        role, content = m.get("role"), m.get("content") or ""
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (role == "user" and turn["Response"]):
            out.append(execute(nodes, {**turn, **flags}))  # a finished earlier turn, rendered in full
            turn = dict.fromkeys(turn, "")
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(str(role))
        if key:
            turn[key] = content
    out.append(execute(_cut_after_response(nodes), {**turn, **flags}))
    if sum(len(s.encode()) for s in out) > (max_output := limit("MAX_OUTPUT_BYTES")):
        raise TemplateError(f"template output exceeds {max_output} bytes")
    return "".join(out)
