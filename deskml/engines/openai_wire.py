"""OpenAI's chat wire format, both ways, for every engine that speaks it: llama.cpp's server core takes
OpenAI-style bodies and streams OpenAI-style chunks, and so do OpenAI-compatible upstreams.

Core messages and tools -> request JSON; streamed chunks -> core events. Pure: no I/O.
"""

from __future__ import annotations

import base64
from typing import Any

from deskml.core.types import (
    ChatMessage,
    Done,
    DoneReason,
    Event,
    TextDelta,
    ThinkingDelta,
    Timings,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    openai_tool_calls,
)


def openai_message(message: ChatMessage) -> dict[str, Any]:
    """One chat message; images become `image_url` parts with a data URL."""
    out: dict[str, Any] = {"role": message.role}
    if message.images:
        # no empty text part: cloud APIs refuse one
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        for image in message.images:
            url = "data:image/png;base64," + base64.b64encode(image).decode()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out["content"] = parts
    else:
        out["content"] = message.content
    if message.tool_calls:
        out["tool_calls"] = openai_tool_calls(message.tool_calls)
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id or ""  # a field OpenAI-style servers require
        if message.name:
            out["name"] = message.name
    return out


def tool_definitions(tools: list[Tool]) -> list[dict[str, Any]]:
    """`tools` as OpenAI (and Ollama) requests carry them."""
    return [{"type": "function", "function": t.model_dump()} for t in tools]


class ChunkTranslator:
    """Turns streamed OpenAI-style chunks (chat deltas or completion texts) into core events.

    llama.cpp adds `timings` to its chunks; where they come, they are the Done's timings."""

    def __init__(self) -> None:
        self.tool_calls: dict[int, ToolCall] = {}
        self.finish: str | None = None
        self.timings = Timings()

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        if "timings" in chunk:
            self._timings(chunk["timings"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta")
            if delta is None:  # /v1/completions chunks carry text, not a delta
                text = choice.get("text") or ""
                if text:
                    events.append(TextDelta(text=text, logprobs=_logprobs(choice.get("logprobs"))))
            else:
                if delta.get("reasoning_content"):
                    events.append(ThinkingDelta(text=delta["reasoning_content"]))
                if delta.get("content"):
                    events.append(TextDelta(text=delta["content"], logprobs=_logprobs(choice.get("logprobs"))))
                for call in delta.get("tool_calls") or []:
                    events.append(self._tool_delta(call))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def _tool_delta(self, call: dict[str, Any]) -> ToolCallDelta:
        index = int(call.get("index", len(self.tool_calls)))
        function = call.get("function") or {}
        current = self.tool_calls.get(index)
        if current is None:
            current = ToolCall(id=call.get("id") or f"call_{index}", name=function.get("name") or "", arguments="")
            self.tool_calls[index] = current
        elif function.get("name"):
            current.name += function["name"]
        current.arguments += function.get("arguments") or ""
        return ToolCallDelta(
            index=index, id=call.get("id"), name=function.get("name"), arguments=function.get("arguments") or ""
        )

    def _timings(self, raw: dict[str, Any]) -> None:
        self.timings.prompt_eval_count = int(raw.get("prompt_n", 0))
        self.timings.prompt_eval_ns = int(float(raw.get("prompt_ms", 0)) * 1e6)
        self.timings.cached_tokens = int(raw.get("cache_n", 0))
        self.timings.eval_count = int(raw.get("predicted_n", 0))
        self.timings.eval_ns = int(float(raw.get("predicted_ms", 0)) * 1e6)
        self.timings.draft_tokens = int(raw.get("draft_n", 0))
        self.timings.draft_accepted_tokens = int(raw.get("draft_n_accepted", 0))

    def done(self, model: str) -> Done:
        calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        reason: DoneReason = "tool_calls" if calls else "length" if self.finish == "length" else "stop"
        return Done(reason=reason, timings=self.timings, tool_calls=calls, model=model)


def _logprobs(raw: Any) -> list[TokenLogprob]:
    if not isinstance(raw, dict):
        return []
    out: list[TokenLogprob] = []
    for item in raw.get("content") or []:
        out.append(
            TokenLogprob(
                token=item.get("token", ""),
                logprob=float(item.get("logprob", 0.0)),
                bytes=item.get("bytes"),
                top=[(t.get("token", ""), float(t.get("logprob", 0.0))) for t in item.get("top_logprobs") or []],
            )
        )
    return out
