"""Checks a request passes before it may use a model, and what identifies a model's replies.

The prompt-size limit counts characters of everything the client sent as text (prompt, system,
messages, tool-call arguments, embedding inputs). It is a size limit only: what the text says is
never inspected.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from deskml.core.errors import BadRequest
from deskml.core.types import ChatRequest, EmbedRequest, GenerateRequest
from deskml.runtime.registry import ModelEntry


def input_chars(request: BaseModel) -> int:
    if isinstance(request, GenerateRequest):
        return len(request.prompt) + len(request.system or "") + len(request.suffix or "") + len(request.template or "")
    if isinstance(request, ChatRequest):
        total = 0
        for message in request.messages:
            total += len(message.content) + len(message.thinking or "")
            total += sum(len(call.arguments) + len(call.name) for call in message.tool_calls)
        return total
    if isinstance(request, EmbedRequest):
        return sum(len(text) for text in request.inputs)
    return 0


def check_input_size(request: BaseModel, limit: int) -> None:
    """Raise a 400 naming the limit when the request's text is longer than `limit` characters."""
    if limit <= 0:
        return
    size = input_chars(request)
    if size > limit:
        raise BadRequest(
            f"the input is {size} characters, over this server's limit of {limit} (DESKML_MAX_PROMPT_CHARS)",
            param="prompt" if isinstance(request, GenerateRequest) else
            "messages" if isinstance(request, ChatRequest) else "input",
        )


def cache_identity(entry: ModelEntry, default_ctx: int) -> dict[str, Any]:
    """Everything about the model that shapes its replies: the weights' digest and the Modelfile
    (system, template, parameters, preset messages), plus the server's default context length."""
    manifest = entry.manifest.model_dump(mode="json", exclude={"modified_at", "source", "license"})
    return {"name": entry.name, "digest": entry.digest, "manifest": manifest, "num_ctx": default_ctx}
