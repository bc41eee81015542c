"""Pure translation between core requests/events and the two wire dialects an upstream speaks.

`openai_*` build bodies for `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and read
their SSE chunks; `ollama_*` do the same for `/api/chat`, `/api/generate`, `/api/embed` and NDJSON
lines. No I/O here: `engines/remote.py` moves the bytes.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from deskml.core.types import (
    ChatMessage,
    ChatRequest,
    Done,
    DoneReason,
    EmbedRequest,
    Event,
    GenerateRequest,
    InferenceCommon,
    TextDelta,
    ThinkingDelta,
    Timings,
    ToolCall,
    ToolCallDelta,
    ollama_tool_calls,
)
from deskml.engines.openai_wire import ChunkTranslator, openai_message, tool_definitions

# Sampling fields every OpenAI-compatible server accepts; cloud APIs reject unknown ones with 400,
# so llama.cpp-only knobs (top_k, min_p, repeat_penalty, mirostat...) are not sent there.
_OPENAI_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed")


# OpenAI dialect ---------------------------------------------------------------------------------
def _openai_common(model: str, request: InferenceCommon) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    options = request.options
    for name in _OPENAI_SAMPLING:
        value = getattr(options, name)
        if value is not None:
            body[name] = value
    if options.num_predict is not None and options.num_predict > 0:
        body["max_tokens"] = options.num_predict
    if options.stop:
        body["stop"] = options.stop
    return body


def openai_chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    body = _openai_common(model, request)
    body["messages"] = [openai_message(m) for m in request.messages]
    if request.tools:
        body["tools"] = tool_definitions(request.tools)
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "function" else choice.mode
        )
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.format is not None:
        if request.format.kind == "json_schema" and request.format.schema_ is not None:
            body["response_format"] = {
                "type": "json_schema", "json_schema": {"name": "response", "schema": request.format.schema_},
            }
        else:
            body["response_format"] = {"type": "json_object"}
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    return body


def openai_generate_body(model: str, request: GenerateRequest) -> tuple[str, dict[str, Any]]:
    """(path, body): raw prompts go to /v1/completions, the rest become a chat."""
    if request.raw:
        body = _openai_common(model, request)
        body["prompt"] = request.prompt
        return "/v1/completions", body
    messages = [ChatMessage(role="system", content=request.system)] if request.system else []
    messages.append(ChatMessage(role="user", content=request.prompt, images=request.images))
    chat = ChatRequest(**request.model_dump(include=set(InferenceCommon.model_fields)), messages=messages)
    return "/v1/chat/completions", openai_chat_body(model, chat)


def openai_embed_body(model: str, request: EmbedRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": request.inputs}
    if request.dimensions:
        body["dimensions"] = request.dimensions
    return body


class OpenAIStream:
    """SSE `data:` payloads of a chat or completion stream -> core events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.chunks = ChunkTranslator()
        self.started = time.perf_counter_ns()
        self.first_token: int | None = None
        self.usage: dict[str, Any] = {}

    def feed(self, payload: dict[str, Any]) -> list[Event]:
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        events = self.chunks.feed(payload)
        if events and self.first_token is None:
            self.first_token = time.perf_counter_ns()
        return events

    def done(self) -> Done:
        done = self.chunks.done(self.model)
        timings = done.timings
        if self.usage:
            details = self.usage.get("prompt_tokens_details") or {}
            cached = int(details.get("cached_tokens") or 0)
            timings.prompt_eval_count = int(self.usage.get("prompt_tokens") or 0) - cached
            timings.cached_tokens = cached
            timings.eval_count = int(self.usage.get("completion_tokens") or 0)
        now = time.perf_counter_ns()
        if not timings.eval_ns and self.first_token is not None:
            timings.eval_ns = now - self.first_token
            timings.prompt_eval_ns = self.first_token - self.started
        timings.total_ns = now - self.started
        return done


def openai_embeddings(payload: dict[str, Any]) -> tuple[list[list[float]], int]:
    data = sorted(payload.get("data") or [], key=lambda d: d.get("index", 0))
    usage = payload.get("usage") or {}
    return [list(map(float, d.get("embedding") or [])) for d in data], int(usage.get("prompt_tokens") or 0)


def error_message(payload: Any) -> str | None:
    """The message of an `{"error": ...}` body in either dialect; None when it is not an error."""
    if not isinstance(payload, dict) or "error" not in payload:
        return None
    error = payload["error"]
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


# Ollama dialect ---------------------------------------------------------------------------------
def _ollama_options(request: InferenceCommon) -> dict[str, Any]:
    options = request.options.model_dump(exclude_none=True)
    if request.num_ctx:
        options["num_ctx"] = request.num_ctx
    return options


def _ollama_format(request: InferenceCommon) -> Any:
    if request.format is None:
        return None
    if request.format.kind == "json_schema" and request.format.schema_ is not None:
        return request.format.schema_
    return "json"


def _ollama_common(model: str, request: InferenceCommon) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": True}
    options = _ollama_options(request)
    if options:
        body["options"] = options
    fmt = _ollama_format(request)
    if fmt is not None:
        body["format"] = fmt
    if request.keep_alive is not None:
        body["keep_alive"] = request.keep_alive
    if request.truncate:
        body["truncate"] = True
    return body


def _ollama_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        out["images"] = [base64.b64encode(i).decode() for i in message.images]
    if message.tool_calls:
        out["tool_calls"] = ollama_tool_calls(message.tool_calls, numbered=False)
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    if message.thinking:
        out["thinking"] = message.thinking
    return out


def ollama_chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    body = _ollama_common(model, request)
    body["messages"] = [_ollama_message(m) for m in request.messages]
    if request.tools:
        body["tools"] = tool_definitions(request.tools)
    return body


def ollama_generate_body(model: str, request: GenerateRequest) -> dict[str, Any]:
    body = _ollama_common(model, request)
    body["prompt"] = request.prompt
    for name in ("system", "template", "suffix"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.raw:
        body["raw"] = True
    if request.images:
        body["images"] = [base64.b64encode(i).decode() for i in request.images]
    return body


def ollama_embed_body(model: str, request: EmbedRequest) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": request.inputs, "truncate": request.truncate}
    if request.dimensions:
        body["dimensions"] = request.dimensions
    if request.num_ctx:
        body["options"] = {"num_ctx": request.num_ctx}
    return body


class OllamaStream:
    """NDJSON lines of `/api/chat` or `/api/generate` -> core events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.tool_calls: list[ToolCall] = []
        self.final: dict[str, Any] | None = None

    def feed(self, line: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        message = line.get("message")
        if isinstance(message, dict):
            text, thinking = message.get("content") or "", message.get("thinking") or ""
            for raw in message.get("tool_calls") or []:
                function = raw.get("function") or {}
                arguments = function.get("arguments")
                call = ToolCall(
                    id=str(raw.get("id") or f"call_{len(self.tool_calls)}"), name=str(function.get("name") or ""),
                    arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                )
                events.append(ToolCallDelta(index=len(self.tool_calls), id=call.id, name=call.name,
                                            arguments=call.arguments))
                self.tool_calls.append(call)
        else:
            text, thinking = line.get("response") or "", line.get("thinking") or ""
        if thinking:
            events.insert(0, ThinkingDelta(text=thinking))
        if text:
            events.insert(1 if thinking else 0, TextDelta(text=text))
        if line.get("done"):
            self.final = line
        return events

    def done(self) -> Done:
        line = self.final or {}
        timings = Timings(
            total_ns=int(line.get("total_duration") or 0), load_ns=int(line.get("load_duration") or 0),
            prompt_eval_count=int(line.get("prompt_eval_count") or 0),
            prompt_eval_ns=int(line.get("prompt_eval_duration") or 0),
            eval_count=int(line.get("eval_count") or 0), eval_ns=int(line.get("eval_duration") or 0),
        )
        finish = line.get("done_reason")
        reason: DoneReason = "tool_calls" if self.tool_calls else "length" if finish == "length" else "stop"
        return Done(reason=reason, timings=timings, tool_calls=list(self.tool_calls), model=self.model)
