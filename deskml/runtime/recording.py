"""Put a request's input and output on the current request record, for the request history.

Done here, where every dialect's request has become one core type, so the history holds the same
shape whichever API was called: input `{"messages": [...]}`, `{"prompt", "system"}` or
`{"input": [...]}`; output `{"content"}` plus `thinking` and `tool_calls` when there were any.
Images are noted by size, never copied.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from deskml.core.context import current_record
from deskml.core.types import (
    ChatMessage,
    ChatRequest,
    Done,
    EmbedRequest,
    Event,
    GenerateRequest,
    TextDelta,
    ThinkingDelta,
)


def _message(message: ChatMessage) -> dict[str, Any]:
    item: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        item["images"] = [f"<image, {len(image)} bytes>" for image in message.images]
    if message.tool_calls:
        item["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in message.tool_calls]
    if message.thinking:
        item["thinking"] = message.thinking
    return item


def request_input(request: ChatRequest | GenerateRequest | EmbedRequest) -> dict[str, Any]:
    if isinstance(request, ChatRequest):
        return {"messages": [_message(m) for m in request.messages]}
    if isinstance(request, GenerateRequest):
        value: dict[str, Any] = {"prompt": request.prompt}
        if request.system is not None:
            value["system"] = request.system
        if request.images:
            value["images"] = [f"<image, {len(image)} bytes>" for image in request.images]
        return value
    return {"input": list(request.inputs)}


def note_input(request: ChatRequest | GenerateRequest | EmbedRequest) -> None:
    """Record the request's input unless a router recorded it already."""
    record = current_record()
    if record is not None and record.input is None:
        record.input = request_input(request)


async def recorded(request: ChatRequest | GenerateRequest,
                   events: AsyncGenerator[Event, None]) -> AsyncGenerator[Event, None]:
    """Pass `events` through, noting input at the start and output at the end (also when cut short)."""
    record = current_record()
    if record is None:
        async with aclosing(events) as stream:
            async for event in stream:
                yield event
        return
    note_input(request)
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    try:
        async with aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, ThinkingDelta):
                    thinking.append(event.text)
                elif isinstance(event, Done):
                    tool_calls = [{"name": c.name, "arguments": c.arguments} for c in event.tool_calls]
                yield event
    finally:
        output: dict[str, Any] = {"content": "".join(text)}
        if thinking:
            output["thinking"] = "".join(thinking)
        if tool_calls:
            output["tool_calls"] = tool_calls
        if record.output is None:
            record.output = output
