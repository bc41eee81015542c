"""Pure translation between Ollama wire types and deskml's core types (no I/O)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from deskml.api.ollama import schemas as wire
from deskml.core import types as core
from deskml.core.durations import parse_keep_alive
from deskml.core.errors import BadRequest
from deskml.core.json_schema import check_json_schema
from deskml.core.options import gpu_options, speculative_option, split_options
from deskml.core.speculation import draft_fields
from deskml.core.validate import check_unicode
from deskml.runtime import names
from deskml.runtime.gguf import GGUFInfo
from deskml.runtime.model_store import Manifest
from deskml.runtime.service_models.listing import ServiceModelCard
from deskml.runtime.service_models.manager import ServiceSpec

log = logging.getLogger("deskml.api.ollama")


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with a Z, as Go's time.Time marshals."""
    value = (when or datetime.now(UTC)).astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def log_extras(request: BaseModel) -> None:
    if request.model_extra:
        log.debug("ignoring unknown fields: %s", ", ".join(sorted(request.model_extra)))


def keep_alive(value: wire.KeepAlive) -> float | None:
    return None if value is None else parse_keep_alive(value)


def response_format(value: wire.Format) -> core.ResponseFormat | None:
    if value is None or value == "":
        return None
    if value == "json":
        return core.ResponseFormat(kind="json")
    if isinstance(value, dict):
        check_json_schema(value)
        return core.ResponseFormat(kind="json_schema", schema=value)
    raise BadRequest(f"invalid format {value!r}: use \"json\" or a JSON schema object", param="format")


def images(values: list[str] | None) -> list[bytes]:
    decoded: list[bytes] = []
    for index, value in enumerate(values or []):
        data = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            decoded.append(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"images[{index}] is not valid base64") from None
    return decoded


def _options(options: dict[str, Any] | None) -> tuple[core.SamplingOptions, int | None]:
    sampling, num_ctx, _ignored = split_options(options or {})
    return sampling, num_ctx


def _tool_call(call: wire.ToolCallWire, index: int) -> core.ToolCall:
    args = call.function.arguments
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return core.ToolCall(id=call.id or f"call_{index}", name=call.function.name, arguments=text)


_ROLES = {"system", "user", "assistant", "tool"}


def message(value: wire.Message, index: int) -> core.ChatMessage:
    if value.role not in _ROLES:
        raise BadRequest(f"messages[{index}].role must be one of system, user, assistant, tool")
    return core.ChatMessage(
        role=value.role,
        content=value.content or "",
        images=images(value.images),
        tool_calls=[_tool_call(c, i) for i, c in enumerate(value.tool_calls or [])],
        tool_call_id=value.tool_call_id,
        name=value.tool_name,
        thinking=value.thinking,
    )


def _top_logprobs(value: int | None) -> int:
    if value is not None and not 0 <= value <= core.MAX_TOP_LOGPROBS:
        raise BadRequest(f"top_logprobs must be between 0 and {core.MAX_TOP_LOGPROBS}")
    return value or 0


def chat_request(req: wire.ChatRequest) -> core.ChatRequest:
    log_extras(req)
    check_unicode(req)
    sampling, num_ctx = _options(req.options)
    tools = [
        core.Tool(
            name=t.function.name,
            description=t.function.description or "",
            parameters=t.function.parameters or {"type": "object", "properties": {}},
        )
        for t in req.tools or []
    ]
    return core.ChatRequest(
        model=req.model,
        messages=[message(m, i) for i, m in enumerate(req.messages or [])],
        options=sampling,
        num_ctx=num_ctx,
        **gpu_options(req.options),
        speculative=speculative_option(req.options),
        format=response_format(req.format),
        keep_alive=keep_alive(req.keep_alive),
        truncate=bool(req.truncate),
        tools=tools,
        logprobs=bool(req.logprobs),
        top_logprobs=_top_logprobs(req.top_logprobs),
    )


def generate_request(req: wire.GenerateRequest) -> core.GenerateRequest:
    log_extras(req)
    check_unicode(req)
    sampling, num_ctx = _options(req.options)
    return core.GenerateRequest(
        model=req.model,
        prompt=req.prompt or "",
        suffix=req.suffix,
        system=req.system,
        template=req.template,
        raw=bool(req.raw),
        images=images(req.images),
        options=sampling,
        num_ctx=num_ctx,
        **gpu_options(req.options),
        speculative=speculative_option(req.options),
        format=response_format(req.format),
        keep_alive=keep_alive(req.keep_alive),
        truncate=bool(req.truncate),
        logprobs=bool(req.logprobs),
        top_logprobs=_top_logprobs(req.top_logprobs),
    )


def embed_inputs(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def embed_request(req: wire.EmbedRequest) -> core.EmbedRequest:
    log_extras(req)
    check_unicode(req)
    _sampling, num_ctx = _options(req.options)
    if req.dimensions is not None and req.dimensions <= 0:
        raise BadRequest("dimensions must be positive", param="dimensions")
    return core.EmbedRequest(
        model=req.model, inputs=embed_inputs(req.input), truncate=req.truncate is not False,
        dimensions=req.dimensions, keep_alive=keep_alive(req.keep_alive), num_ctx=num_ctx,
        **gpu_options(req.options),
    )


def embeddings_request(req: wire.EmbeddingsRequest) -> core.EmbedRequest:
    """The older `/api/embeddings`: one prompt, one vector."""
    log_extras(req)
    check_unicode(req)
    _sampling, num_ctx = _options(req.options)
    return core.EmbedRequest(model=req.model, inputs=[req.prompt] if req.prompt else [],
                             keep_alive=keep_alive(req.keep_alive), num_ctx=num_ctx)


# responses -------------------------------------------------------------------------------------
def timing_fields(done: core.Done) -> dict[str, Any]:
    t = done.timings
    fields: dict[str, Any] = {
        "total_duration": t.total_ns,
        "load_duration": t.load_ns,
        "prompt_eval_count": t.prompt_eval_count,
        "prompt_eval_duration": t.prompt_eval_ns,
        "eval_count": t.eval_count,
        "eval_duration": t.eval_ns,
    }
    return fields | draft_fields(t.draft_tokens, t.draft_accepted_tokens)


def logprobs_wire(items: list[core.TokenLogprob], top: int) -> list[dict[str, Any]]:
    """Ollama's `logprobs`: one entry per generated token, `top_logprobs` only when asked for."""
    out: list[dict[str, Any]] = []
    for item in items:
        entry: dict[str, Any] = {"token": item.token, "logprob": item.logprob,
                                 "bytes": item.bytes if item.bytes is not None else list(item.token.encode())}
        if top > 0:
            entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in item.top[:top]]
        out.append(entry)
    return out


def chat_chunk(model: str, event: core.TextDelta | core.ThinkingDelta, top_logprobs: int | None = None
               ) -> dict[str, Any]:
    """One streamed line; `top_logprobs` is None unless the request asked for logprobs."""
    msg: dict[str, Any] = {"role": "assistant", "content": ""}
    if isinstance(event, core.ThinkingDelta):
        msg["thinking"] = event.text
    else:
        msg["content"] = event.text
    body: dict[str, Any] = {"model": model, "created_at": timestamp(), "message": msg, "done": False}
    if top_logprobs is not None and isinstance(event, core.TextDelta):
        body["logprobs"] = logprobs_wire(event.logprobs, top_logprobs)
    return body


def chat_final(model: str, done: core.Done, content: str = "", thinking: str = "",
               include_tools: bool = True, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if include_tools and done.tool_calls:
        msg["tool_calls"] = core.ollama_tool_calls(done.tool_calls)
    body: dict[str, Any] = {"model": model, "created_at": timestamp(), "message": msg, "done": True,
                            "done_reason": ollama_reason(done.reason)}
    if logprobs is not None:
        body["logprobs"] = logprobs
    body.update(timing_fields(done))
    return body


def generate_chunk(model: str, event: core.TextDelta | core.ThinkingDelta, top_logprobs: int | None = None
                   ) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created_at": timestamp(), "response": "", "done": False}
    if isinstance(event, core.ThinkingDelta):
        body["thinking"] = event.text
    else:
        body["response"] = event.text
        if top_logprobs is not None:
            body["logprobs"] = logprobs_wire(event.logprobs, top_logprobs)
    return body


def generate_final(model: str, done: core.Done, response: str = "", thinking: str = "",
                   logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created_at": timestamp(), "response": response, "done": True,
                            "done_reason": ollama_reason(done.reason)}
    if thinking:
        body["thinking"] = thinking
    if logprobs is not None:
        body["logprobs"] = logprobs
    body.update(timing_fields(done))
    return body


def service_process(spec: ServiceSpec, card: ServiceModelCard | None, expires: datetime, running: int,
                    device: str = "cpu") -> wire.ProcessModel:
    """An /api/ps row for a loaded embedding, vision, speech or image model (no slots, no context)."""
    name = names.display(spec.name)
    return wire.ProcessModel(
        name=name, model=name, size=card.size if card else 0, digest=card.digest if card else "",
        details=wire.ModelDetails(format=card.format if card else "", family=spec.family,
                                  families=[spec.family] if spec.family else None,
                                  parameter_size=card.parameter_size if card else ""),
        # a service model on a GPU holds its weights there: all of its size counts as device memory
        expires_at=timestamp(expires), size_vram=(card.size if card else 0) if device != "cpu" else 0,
        context_length=0, slots=0, running=running, queued=0, kind=spec.kind,
        processor="100% CPU" if device == "cpu" else "100% GPU", device=device,
    )


def ollama_reason(reason: str) -> str:
    # Ollama reports "stop" when a reply ends in tool calls.
    return "stop" if reason == "tool_calls" else reason


# The file format of a pulled model's layout, in the words Ollama's `details.format` uses.
FILE_FORMATS = {"sentence-transformers": "safetensors", "wordllama": "safetensors", "piper": "onnx"}


def entry_details(manifest: Manifest, info: GGUFInfo | None) -> wire.ModelDetails:
    """Details of a registry model: from its GGUF header, or for other formats from its manifest."""
    if (manifest.format or "gguf") == "gguf":
        return details(info, manifest.parent)
    family = manifest.family or ""
    return wire.ModelDetails(
        parent_model=manifest.parent or "", format=FILE_FORMATS.get(manifest.format or "", manifest.format or ""),
        family=family, families=[family] if family else None, parameter_size=manifest.parameter_size or "",
        quantization_level=manifest.quantization or "",
    )


def details(info: GGUFInfo | None, parent: str | None = None) -> wire.ModelDetails:
    if info is None:
        return wire.ModelDetails(parent_model=parent or "")
    family = info.architecture
    return wire.ModelDetails(
        parent_model=parent or "",
        format="gguf",
        family=family,
        families=[family] if family else None,
        parameter_size=info.parameter_size,
        quantization_level=info.quantization,
    )


def model_info(info: GGUFInfo, verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.metadata.items():
        if key == "tokenizer.chat_template":
            continue  # shown as `template`
        if key.startswith("tokenizer.") and (value is None or isinstance(value, list)) and not verbose:
            out[key] = None
        else:
            out[key] = value
    out["general.parameter_count"] = info.parameter_count
    return out


def parameters_text(parameters: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            rendered = json.dumps(item, ensure_ascii=False) if isinstance(item, str) else str(item)
            lines.append(f"{name:<30} {rendered}")
    return "\n".join(lines)


def short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1]
