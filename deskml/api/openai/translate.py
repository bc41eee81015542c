"""Pure translation between OpenAI wire types and deskml's core types (no I/O).

Requests go wire -> core here; replies go core -> the exact JSON objects OpenAI returns
(`chat.completion`, `chat.completion.chunk`, `text_completion`, `list` of `embedding`, `model`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import string
import struct
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from deskml.api.openai import schemas as wire
from deskml.core import types as core
from deskml.core.errors import BadRequest
from deskml.core.json_schema import check_json_schema
from deskml.core.speculation import draft_fields, speculative_mode
from deskml.core.validate import INT32_MAX, check_unicode, sampling_options

log = logging.getLogger("deskml.api.openai")

# OpenAI's documented default for the legacy completions endpoint.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def log_extras(request: BaseModel, where: str = "") -> None:
    if request.model_extra:
        place = f" in {where}" if where else ""
        log.debug("ignoring unknown fields%s: %s", place, ", ".join(sorted(request.model_extra)))


# requests --------------------------------------------------------------------------------------
def _check_n(n: int | None, best_of: int | None = None) -> None:
    if n is not None and n != 1:
        raise BadRequest(f"n must be 1: deskml returns one choice per request (got {n})", param="n")
    if best_of is not None and best_of != 1:
        raise BadRequest(f"best_of must be 1 (got {best_of})", param="best_of")


def _stop(value: wire.Stop) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _logit_bias(value: dict[str, float] | None) -> dict[int, float] | None:
    if not value:
        return None
    try:
        return {int(token): float(bias) for token, bias in value.items()}
    except ValueError:
        raise BadRequest("logit_bias keys must be token ids", param="logit_bias") from None


def sampling(req: wire._Sampling, max_tokens: int | None, max_name: str = "max_tokens") -> core.SamplingOptions:
    """Core sampling options; `max_name` is the field `max_tokens` came from (for error messages)."""
    if max_tokens is not None and not 1 <= max_tokens <= INT32_MAX:
        raise BadRequest(f"{max_name} must be between 1 and {INT32_MAX}, not {max_tokens}", param=max_name)
    values = {
        "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k, "min_p": req.min_p,
        "repeat_penalty": req.repeat_penalty, "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty, "seed": req.seed, "num_predict": max_tokens,
        "stop": _stop(req.stop), "logit_bias": _logit_bias(req.logit_bias),
    }
    return sampling_options(values, {"num_predict": max_name})


def data_url_image(url: str, where: str) -> bytes:
    if not url.startswith("data:"):
        raise BadRequest(f"{where}: only data: URLs are accepted (deskml does not fetch remote images)", param=where)
    header, _, data = url.partition(",")
    if ";base64" not in header:
        raise BadRequest(f"{where}: the data URL must be base64-encoded", param=where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: invalid base64 image data", param=where) from None


def _content(value: str | list[wire.ContentPart] | None, where: str) -> tuple[str, list[bytes]]:
    if value is None or isinstance(value, str):
        return value or "", []
    texts: list[str] = []
    images: list[bytes] = []
    for index, part in enumerate(value):
        here = f"{where}[{index}]"
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "refusal":
            texts.append(part.refusal or "")
        elif part.type == "image_url":
            url = part.image_url if isinstance(part.image_url, str) else part.image_url.url if part.image_url else ""
            images.append(data_url_image(url, here + ".image_url"))
        else:
            raise BadRequest(f"{here}: content parts of type '{part.type}' are not supported", param=here)
    return "\n".join(texts), images


def _arguments(value: str | dict[str, Any]) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool", "function": "tool"}


def message(value: wire.Message, index: int) -> core.ChatMessage:
    where = f"messages[{index}]"
    log_extras(value, where)
    role = _ROLES.get(value.role)
    if role is None:
        raise BadRequest(f"{where}.role must be one of system, developer, user, assistant, tool", param=where)
    text, images = _content(value.content, f"{where}.content")
    calls = [core.ToolCall(id=c.id or f"call_{i}", name=c.function.name, arguments=_arguments(c.function.arguments))
             for i, c in enumerate(value.tool_calls or [])]
    if value.function_call is not None and not calls:
        calls = [core.ToolCall(id="call_0", name=value.function_call.name,
                               arguments=_arguments(value.function_call.arguments))]
    if role == "tool" and value.role == "tool" and not value.tool_call_id:
        raise BadRequest(f"{where}.tool_call_id is required for a tool message", param=f"{where}.tool_call_id")
    return core.ChatMessage(
        role=role,
        content=text or (value.refusal or ""),
        images=images,
        tool_calls=calls if role == "assistant" else [],
        tool_call_id=value.tool_call_id,
        name=value.name if role == "tool" else None,
    )


def response_format(value: wire.ResponseFormat | None) -> core.ResponseFormat | None:
    if value is None or value.type == "text":
        return None
    if value.type == "json_object":
        return core.ResponseFormat(kind="json")
    if value.type == "json_schema":
        schema = value.json_schema.schema_ if value.json_schema else None
        if schema is None:
            raise BadRequest("response_format.json_schema.schema is required", param="response_format")
        check_json_schema(schema, param="response_format")
        return core.ResponseFormat(kind="json_schema", schema=schema)
    raise BadRequest(f"response_format.type must be text, json_object or json_schema, not '{value.type}'",
                     param="response_format")


def tools(req: wire.ChatCompletionRequest) -> list[core.Tool]:
    out: list[core.Tool] = []
    if req.tools:
        for index, tool in enumerate(req.tools):
            if tool.type != "function":
                raise BadRequest(f"tools[{index}].type must be 'function'", param=f"tools[{index}].type")
            out.append(_tool(tool.function))
    elif req.functions:
        out = [_tool(f) for f in req.functions]
    return out


def _tool(fn: wire.FunctionDef) -> core.Tool:
    return core.Tool(name=fn.name, description=fn.description or "",
                     parameters=fn.parameters or {"type": "object", "properties": {}})


def tool_choice(req: wire.ChatCompletionRequest) -> core.ToolChoice:
    value = req.tool_choice if req.tool_choice is not None else req.function_call
    if value is None:
        return core.ToolChoice(mode="auto")
    if isinstance(value, str):
        if value not in {"auto", "none", "required"}:
            raise BadRequest(f"tool_choice must be auto, none, required or a named function, not '{value}'",
                             param="tool_choice")
        return core.ToolChoice(mode=value)
    name = value.function.name if isinstance(value, wire.NamedToolChoice) else value.name
    return core.ToolChoice(mode="function", name=name)


def chat_request(req: wire.ChatCompletionRequest) -> core.ChatRequest:
    log_extras(req)
    check_unicode(req)
    _check_n(req.n)
    if not req.messages:
        raise BadRequest("messages must not be empty", param="messages")
    top = req.top_logprobs or 0
    if not 0 <= top <= core.MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {core.MAX_TOP_LOGPROBS}", param="top_logprobs")
    max_tokens: int | None
    if req.max_completion_tokens is not None:
        max_tokens, max_name = req.max_completion_tokens, "max_completion_tokens"
    else:
        max_tokens, max_name = req.max_tokens, "max_tokens"
    return core.ChatRequest(
        model=req.model,
        messages=[message(m, i) for i, m in enumerate(req.messages)],
        options=sampling(req, max_tokens, max_name),
        speculative=speculative_mode(req.speculative, "speculative"),
        format=response_format(req.response_format),
        tools=tools(req),
        tool_choice=tool_choice(req),
        parallel_tool_calls=req.parallel_tool_calls is not False,
        logprobs=bool(req.logprobs),
        top_logprobs=top if req.logprobs else 0,
    )


def text_inputs(value: wire.TextInput | None, param: str) -> list[str]:
    """A prompt or embedding input as a list of texts; token-id arrays are refused."""
    if value is None:
        raise BadRequest(f"{param} is required", param=param)
    if isinstance(value, str):
        return [value]
    if value and not all(isinstance(item, str) for item in value):
        raise BadRequest(f"{param} as token ids is not supported: send text", param=param)
    return list(value)  # type: ignore[arg-type]


def completion_requests(req: wire.CompletionRequest) -> list[core.GenerateRequest]:
    """One raw (untemplated) generation per prompt: a list of prompts gives one choice each."""
    log_extras(req)
    check_unicode(req)
    _check_n(req.n, req.best_of)
    prompts = text_inputs(req.prompt, "prompt")
    if not prompts:
        raise BadRequest("prompt must not be empty", param="prompt")
    top = req.logprobs
    if top is not None and not 0 <= top <= core.MAX_TOP_LOGPROBS:
        raise BadRequest(f"logprobs must be between 0 and {core.MAX_TOP_LOGPROBS}", param="logprobs")
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    options = sampling(req, max_tokens)
    speculative = speculative_mode(req.speculative, "speculative")
    return [
        core.GenerateRequest(
            model=req.model, prompt=prompt, suffix=req.suffix or None, raw=True, options=options,
            logprobs=top is not None, top_logprobs=top or 0, speculative=speculative,
        )
        for prompt in prompts
    ]


def embed_request(req: wire.EmbeddingRequest) -> core.EmbedRequest:
    log_extras(req)
    check_unicode(req)
    inputs = text_inputs(req.input, "input")
    if not inputs or any(text == "" for text in inputs):
        raise BadRequest("input must be a non-empty string or a list of non-empty strings", param="input")
    if req.encoding_format not in {None, "float", "base64"}:
        raise BadRequest("encoding_format must be float or base64", param="encoding_format")
    if req.dimensions is not None and req.dimensions <= 0:
        raise BadRequest("dimensions must be positive", param="dimensions")
    return core.EmbedRequest(model=req.model, inputs=inputs, dimensions=req.dimensions)


# replies ---------------------------------------------------------------------------------------
@dataclass
class ReplyMeta:
    """What every object of one reply shares."""

    id: str
    created: int
    model: str
    fingerprint: str | None = None


def finish_reason(done: core.Done) -> str:
    return done.reason if done.reason in {"stop", "length", "tool_calls"} else "stop"


def usage(done: core.Done) -> dict[str, Any]:
    t = done.timings
    return {
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.eval_count,
        "total_tokens": t.prompt_tokens + t.eval_count,
        "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
        **draft_fields(t.draft_tokens, t.draft_accepted_tokens),
    }


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(items: list[core.TokenLogprob], top: int) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": item.token,
                "logprob": item.logprob,
                "bytes": item.bytes if item.bytes is not None else _token_bytes(item.token),
                "top_logprobs": [
                    {"token": token, "logprob": logprob, "bytes": _token_bytes(token)}
                    for token, logprob in item.top[:top]
                ],
            }
            for item in items
        ],
        "refusal": None,
    }


def chat_completion(meta: ReplyMeta, result: core.GenerationResult, request: core.ChatRequest) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        msg["tool_calls"] = core.openai_tool_calls(result.tool_calls)
        msg["content"] = result.text or None
    if result.thinking:
        msg["reasoning_content"] = result.thinking  # llama.cpp's and DeepSeek's name for it
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": [{
            "index": 0,
            "message": msg,
            "logprobs": chat_logprobs(result.logprobs, request.top_logprobs) if request.logprobs else None,
            "finish_reason": finish_reason(result.done),
        }],
        "usage": usage(result.done),
    }


class ChatChunks:
    """Renders core events as `chat.completion.chunk` objects, in the order OpenAI sends them:
    a first chunk with the role, content or tool-call deltas, a chunk with the finish reason, and
    (with `stream_options.include_usage`) a last chunk with empty choices and the usage."""

    def __init__(self, meta: ReplyMeta, request: core.ChatRequest, include_usage: bool) -> None:
        self.meta = meta
        self.request = request
        self.include_usage = include_usage
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.meta.id,
            "object": "chat.completion.chunk",
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": self.meta.fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def render(self, event: core.Event) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": "", "refusal": None}))
        if isinstance(event, core.TextDelta):
            logprobs = (chat_logprobs(event.logprobs, self.request.top_logprobs)
                        if self.request.logprobs and event.logprobs else None)
            out.append(self._chunk({"content": event.text}, logprobs=logprobs))
        elif isinstance(event, core.ThinkingDelta):
            out.append(self._chunk({"reasoning_content": event.text}))
        elif isinstance(event, core.ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            function: dict[str, Any] = {"arguments": event.arguments}
            if event.id is not None or event.name is not None:
                call["id"], call["type"] = event.id, "function"
                function = {"name": event.name or "", "arguments": event.arguments}
            call["function"] = function
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, core.Done):
            out.append(self._chunk({}, finish=finish_reason(event)))
            if self.include_usage:
                last = self._chunk({})
                last["choices"], last["usage"] = [], usage(event)
                out.append(last)
        return out


def completion_logprobs(items: list[core.TokenLogprob], top: int, offset: int) -> dict[str, Any]:
    """The legacy completions shape: parallel lists, with each token's offset in the choice text."""
    offsets: list[int] = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [dict(item.top[:top]) for item in items],
        "text_offset": offsets,
    }


def completion_choice(index: int, text: str, done: core.Done | None, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs,
            "finish_reason": finish_reason(done) if done is not None else None}


def completion(meta: ReplyMeta, choices: list[dict[str, Any]], dones: list[core.Done]) -> dict[str, Any]:
    prompt = sum(d.timings.prompt_tokens for d in dones)
    completion_tokens = sum(d.timings.eval_count for d in dones)
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": meta.fingerprint,
        "choices": choices,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                  "total_tokens": prompt + completion_tokens,
                  **draft_fields(sum(d.timings.draft_tokens for d in dones),
                                 sum(d.timings.draft_accepted_tokens for d in dones))},
    }


def completion_chunk(meta: ReplyMeta, choice: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta.id, "object": "text_completion", "created": meta.created, "model": meta.model,
            "system_fingerprint": meta.fingerprint, "choices": [choice]}


def embedding_vector(vector: list[float], encoding_format: str | None) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings(result: core.EmbedResult, encoding_format: str | None) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding_vector(v, encoding_format)}
                 for i, v in enumerate(result.embeddings)],
        "model": result.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }


def model_object(name: str, created: int, owned_by: str = "library") -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}
