"""How one line of a batch runs: the OpenAI request body through the same translation as the live
`/v1/chat/completions` and `/v1/embeddings` routes, at the priority the batch job asks for."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from deskml.api.openai import schemas as wire
from deskml.api.openai import translate as tr
from deskml.api.streaming import collect
from deskml.core import types as core
from deskml.core.errors import BadRequest
from deskml.runtime.inference import InferenceService
from deskml.runtime.jobs.runner import BatchHandler


def _parse(model: type[Any], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"{where}: {first.get('msg')}" if where else str(first.get("msg"))) from None


async def chat_line(inference: InferenceService, body: dict[str, Any], priority: int) -> dict[str, Any]:
    request = _parse(wire.ChatCompletionRequest, body)
    if request.stream:
        raise BadRequest("stream is not supported in a batch", param="stream")
    chat = tr.chat_request(request)
    entry = inference.registry.get(chat.model)
    digest = entry.digest.split(":", 1)[-1]
    meta = tr.ReplyMeta(id=tr.new_id("chatcmpl"), created=int(time.time()), model=entry.name,
                        fingerprint=f"fp_{digest[:10]}" if digest else None)
    events = await collect(inference.chat(chat, priority=priority))
    return tr.chat_completion(meta, core.collect(events), chat)


async def embeddings_line(inference: InferenceService, body: dict[str, Any], priority: int) -> dict[str, Any]:
    request = _parse(wire.EmbeddingRequest, body)
    result = await inference.embed(tr.embed_request(request), priority=priority)
    return tr.embeddings(result, request.encoding_format)


def batch_handlers() -> dict[str, BatchHandler]:
    return {"/v1/chat/completions": chat_line, "/v1/embeddings": embeddings_line}
