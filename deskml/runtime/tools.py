"""Tool calling for every chat model, whether or not its chat template knows about tools.

Two ways to run a request with tools:
- native: the model's Jinja chat template renders `tools` and assistant `tool_calls`, so llama.cpp
  formats the tools in the model's own syntax and parses its calls. Used for `tool_choice: auto`
  without a response format.
- constrained: the tools are described in the system prompt and decoding is constrained by a JSON
  schema (llama.cpp grammar) whose shape is a call `{"tool_calls": [{"name": <a tool>, "arguments":
  <its parameters>}]}`; with `auto` the schema also admits a plain answer `{"content": ...}`. Used
  when the template has no tool support, and for `required` or a named function on every template, because
  llama.cpp does not enforce those (measured with xllamacpp 2026.10: the model answered in plain
  text). The constrained JSON is parsed as it streams into the same core events the native path
  yields: a first ToolCallDelta with id and name, then argument pieces, and Done(reason="tool_calls").

A constrained reply holds exactly one call: OpenAI's `parallel_tool_calls: true` permits several but
never requires them, and small models offered a longer array fill it with unrelated calls. The call
still sits in a one-item `tool_calls` array because that shape, unlike a bare `{"name": ...}` object,
let SmolLM2-135M choose between calling and answering sensibly (6 of 7 test prompts against 3 of 7;
temperature 0, f16 KV cache).

Where the template has no tool support, earlier tool calls and tool results in the history are
rewritten as plain text (a call as `Calling name({...})`, a result as a user message), so any
template, however strict about roles, can render them.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from deskml.core.errors import BadRequest
from deskml.core.json_schema import check_json_schema
from deskml.core.types import (
    ChatMessage,
    ChatRequest,
    Done,
    Event,
    ResponseFormat,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from deskml.runtime.gotemplate import is_go_template
from deskml.runtime.json_stream import MemberScanner, StringDecoder

Mode = Literal["off", "native", "constrained"]

_ID_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def template_supports_tools(template: str | None) -> bool:
    """Whether a Jinja chat template renders tool definitions and assistant tool calls.

    Go templates (Ollama Modelfiles) never count: deskml renders them itself and llama.cpp's
    completion endpoint does not parse tool calls out of the text.
    """
    if not template or is_go_template(template):
        return False
    return "tools" in template and "tool_call" in template


@dataclass
class ToolPlan:
    mode: Mode
    messages: list[ChatMessage]
    tools: list[Tool] = field(default_factory=list)  # the tools offered to the model
    schema: dict[str, Any] | None = None  # the reply's JSON schema (constrained mode)
    content_is_json: bool = False  # auto + response format: the answer member is raw JSON, not a string


def validate_tools(request: ChatRequest) -> None:
    names = [t.name for t in request.tools]
    for index, tool in enumerate(request.tools):
        if not tool.name:
            raise BadRequest(f"tools[{index}].function.name is required", param="tools")
        check_json_schema(tool.parameters, param=f"tools[{index}].function.parameters")
    if len(set(names)) != len(names):
        raise BadRequest("tool names must be unique", param="tools")
    choice = request.tool_choice
    if choice.mode in {"required", "function"} and not request.tools:
        raise BadRequest(f"tool_choice '{choice.mode}' needs at least one tool in 'tools'", param="tool_choice")
    if choice.mode == "function" and choice.name not in names:
        raise BadRequest(f"tool_choice names the function '{choice.name}', which is not in 'tools'",
                         param="tool_choice")


def plan(request: ChatRequest, messages: list[ChatMessage], native: bool) -> ToolPlan:
    """How to run `request` (whose Modelfile-expanded history is `messages`) on a template that
    does (`native`) or does not support tools."""
    validate_tools(request)
    choice = request.tool_choice
    if choice.mode == "none":
        offered: list[Tool] = []
    elif choice.mode == "function":
        offered = [t for t in request.tools if t.name == choice.name]
    else:
        offered = list(request.tools)
    history = list(messages) if native else history_as_text(messages)
    if not offered:
        return ToolPlan(mode="off", messages=history)
    if native and choice.mode == "auto" and request.format is None:
        return ToolPlan(mode="native", messages=history, tools=offered)
    auto = choice.mode == "auto"
    content_schema = _content_schema(request.format) if auto else None
    return ToolPlan(
        mode="constrained",
        messages=_with_system(history, tools_prompt(offered, auto, request.format is None)),
        tools=offered,
        schema=reply_schema(offered, content_schema),
        content_is_json=request.format is not None,
    )


# prompt and schema -----------------------------------------------------------------------------
def tools_prompt(tools: list[Tool], auto: bool, content_is_string: bool = True) -> str:
    lines = ["You can use these tools:"]
    lines += [json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters},
                         ensure_ascii=False) for t in tools]
    lines.append("")
    call = '{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}]}'
    if auto:
        answer = '"<your answer>"' if content_is_string else "<your answer as JSON>"
        lines.append(f"Reply in JSON. If the request needs a tool, call it with {call}. "
                     f'Otherwise answer directly with {{"content": {answer}}}.')
    else:
        lines.append(f"Reply in JSON with a tool call: {call}.")
    return "\n".join(lines)


def call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def reply_schema(tools: list[Tool], content: dict[str, Any] | None) -> dict[str, Any]:
    """One call to one of `tools`; with `content`, alternatively an answer `{"content": ...}`."""
    calls = [call_schema(t) for t in tools]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    options: list[dict[str, Any]] = [{
        "type": "object",
        "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1, "maxItems": 1}},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }]
    if content is not None:
        options.append({"type": "object", "properties": {"content": content}, "required": ["content"],
                        "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def _content_schema(fmt: ResponseFormat | None) -> dict[str, Any]:
    if fmt is None:
        return {"type": "string"}
    if fmt.kind == "json_schema" and fmt.schema_ is not None:
        return fmt.schema_
    return {"type": "object"}


def _with_system(messages: list[ChatMessage], text: str) -> list[ChatMessage]:
    result = list(messages)
    for index, message in enumerate(result):
        if message.role == "system":
            joined = f"{message.content}\n\n{text}" if message.content else text
            result[index] = message.model_copy(update={"content": joined})
            return result
    return [ChatMessage(role="system", content=text), *result]


def history_as_text(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Rewrite tool calls and tool results as plain text, for templates without tool support.

    Results become user messages (every template renders those), merged with a neighbouring user
    message so templates that insist on alternating roles still render.
    """
    names: dict[str, str] = {}
    result: list[ChatMessage] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            for call in message.tool_calls:
                if call.id:
                    names[call.id] = call.name
            calls = "\n".join(f"Calling {c.name}({_compact(c.arguments)})" for c in message.tool_calls)
            text = f"{message.content}\n{calls}" if message.content else calls
            result.append(message.model_copy(update={"content": text, "tool_calls": []}))
        elif message.role == "tool":
            name = message.name or names.get(message.tool_call_id or "", "") or "tool"
            text = f"Tool result ({name}): {message.content}"
            if result and result[-1].role == "user":
                result[-1] = result[-1].model_copy(update={"content": f"{result[-1].content}\n\n{text}"})
            else:
                result.append(ChatMessage(role="user", content=text))
        elif message.role == "user" and result and result[-1].role == "user" and result[-1].content.startswith(
            "Tool result ("
        ):
            merged = f"{result[-1].content}\n\n{message.content}"
            result[-1] = message.model_copy(update={"content": merged, "images": result[-1].images + message.images})
        else:
            result.append(message)
    return result


def _compact(arguments: str) -> str:
    """Arguments as one-line JSON (a constrained reply's come indented), or as given if not JSON."""
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
    except ValueError:
        return arguments


# parsing the constrained reply -----------------------------------------------------------------
class ConstrainedReply:
    """Turns the text events of a constrained reply into tool-call or answer events."""

    def __init__(self, content_is_json: bool) -> None:
        self._scanner = MemberScanner()
        self._call = MemberScanner()  # the call object inside `tool_calls`
        self._array_open = False
        self._content_is_json = content_is_json
        self._decoder = StringDecoder()
        self.call_id = new_call_id()
        self.name: str | None = None
        self._name_raw = ""
        self._arguments: list[str] = []
        self._arguments_done = False
        self._announced = False
        self._sent = 0  # argument pieces already sent as deltas

    def feed(self, event: Event) -> list[Event]:
        if not isinstance(event, TextDelta):
            return [event]
        out: list[Event] = []
        for piece in self._scanner.feed(event.text):
            if piece.key == "content":
                text = piece.raw if self._content_is_json else self._decoder.feed(piece.raw)
                if text:
                    out.append(TextDelta(text=text))
            elif piece.key == "tool_calls":
                out.extend(self._call_piece(piece.raw))
        return out

    def _call_piece(self, raw: str) -> list[Event]:
        if not self._array_open:  # the one-item array: the call object starts after its `[`
            start = raw.find("[")
            if start < 0:
                return []
            self._array_open, raw = True, raw[start + 1 :]
        for piece in self._call.feed(raw):
            if piece.key == "name":
                self._name_raw += piece.raw
                if piece.finished:
                    self.name = str(json.loads(self._name_raw))
            elif piece.key == "arguments":
                self._arguments.append(piece.raw)
                self._arguments_done = piece.finished
        return self._call_deltas()

    def _call_deltas(self) -> list[Event]:
        if self.name is None:
            return []  # arguments wait until the call has a name, as OpenAI's first delta carries it
        out: list[Event] = []
        if not self._announced:
            self._announced = True
            out.append(ToolCallDelta(index=0, id=self.call_id, name=self.name, arguments=""))
        pending = self._arguments[self._sent:]
        self._sent = len(self._arguments)
        out.extend(ToolCallDelta(index=0, arguments=raw) for raw in pending if raw)
        return out

    def finish(self, done: Done) -> Done:
        if self.name is not None and self._arguments_done:
            call = ToolCall(id=self.call_id, name=self.name, arguments="".join(self._arguments))
            return done.model_copy(update={"reason": "tool_calls", "tool_calls": [call]})
        if self.name is not None:  # cut off inside the call (max_tokens): no call to run
            return done.model_copy(update={"reason": "length", "tool_calls": []})
        return done


def planned_events(tool_plan: ToolPlan, events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """The engine's events for `tool_plan`: parsed into calls or answer text when constrained, else
    the engine's own stream (no pass-through hop per token)."""
    return events if tool_plan.mode != "constrained" else _constrained_events(events, tool_plan.content_is_json)


async def _constrained_events(events: AsyncGenerator[Event, None],
                              content_is_json: bool) -> AsyncGenerator[Event, None]:
    async with aclosing(events) as stream:
        reply = ConstrainedReply(content_is_json)
        async for event in stream:
            if isinstance(event, Done):
                yield reply.finish(event)
            else:
                for item in reply.feed(event):
                    yield item
