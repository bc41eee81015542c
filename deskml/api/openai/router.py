"""OpenAI API routes under /v1: thin handlers over the inference service and the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request, Response

from deskml.api.deps import InferenceDep, RegistryDep, SettingsDep
from deskml.api.errors import error_body
from deskml.api.openai import schemas as wire
from deskml.api.openai import translate as tr
from deskml.api.streaming import collect, dumps, prime, sse_lines, stream_response, until_disconnected
from deskml.core import types as core
from deskml.core.errors import BadRequest, DeskmlError, ModelNotFound
from deskml.runtime.inference import InferenceService
from deskml.runtime.registry import ModelEntry, Registry

router = APIRouter(prefix="/v1")

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def _upstream_only(inference: InferenceService, model: str) -> bool:
    """Whether a routing node answers `model` from elsewhere (DESKML_UPSTREAMS_FILE): this node does not serve
    it (the router says 404 itself when no upstream does; an upstream may accept names it does not list)."""
    return inference.router is not None and not inference.serves_locally(model, "chat")


def _reply_meta(inference: InferenceService, registry: Registry, prefix: str, model: str) -> tr.ReplyMeta:
    if _upstream_only(inference, model):
        return tr.ReplyMeta(id=tr.new_id(prefix), created=int(time.time()), model=model, fingerprint=None)
    return _meta(prefix, registry.get(model))


def _meta(prefix: str, entry: ModelEntry) -> tr.ReplyMeta:
    digest = entry.digest.split(":", 1)[-1]
    return tr.ReplyMeta(id=tr.new_id(prefix), created=int(time.time()), model=entry.name,
                        fingerprint=f"fp_{digest[:10]}" if digest else None)


def _error_event(exc: Exception) -> dict[str, Any]:
    """The SSE event for an error after the stream began: the error object a status would have carried."""
    if isinstance(exc, DeskmlError):
        return error_body("openai", exc.status, exc.message, code=exc.code, param=exc.param)
    return error_body("openai", 500, f"internal error: {type(exc).__name__}")


# chat ------------------------------------------------------------------------------------------
@router.post("/chat/completions")
async def chat_completions(body: wire.ChatCompletionRequest, request: Request, inference: InferenceDep,
                           registry: RegistryDep) -> Response:
    req = tr.chat_request(body)
    meta = _reply_meta(inference, registry, "chatcmpl", req.model)
    events = inference.chat(req)
    if not body.stream:
        result = core.collect(await until_disconnected(request, collect(events)))
        return _json(tr.chat_completion(meta, result, req))
    first, rest = await prime(request, events)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = tr.ChatChunks(meta, req, include_usage)
    return stream_response(sse_lines(first, rest, chunks.render, _error_event), "text/event-stream", _SSE_HEADERS)


# completions -----------------------------------------------------------------------------------
async def merged(streams: list[AsyncIterator[core.Event]], limit: int) -> AsyncIterator[tuple[int, core.Event]]:
    """Events of several generations as (index, event), at most `limit` running at once, so a
    long prompt list queues here instead of filling the model's request queue."""
    queue: asyncio.Queue[tuple[int, core.Event | BaseException | None]] = asyncio.Queue()
    gate = asyncio.Semaphore(max(1, limit))

    async def pump(index: int, stream: AsyncIterator[core.Event]) -> None:
        try:
            async with gate, aclosing(stream) as events:  # type: ignore[type-var]
                async for event in events:
                    await queue.put((index, event))
            await queue.put((index, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put((index, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _CompletionChunks:
    """Renders (index, event) pairs of several prompts as `text_completion` chunks."""

    def __init__(self, meta: tr.ReplyMeta, reqs: list[core.GenerateRequest], echo: bool, include_usage: bool) -> None:
        self.meta, self.reqs, self.echo, self.include_usage = meta, reqs, echo, include_usage
        self.offsets = [len(r.prompt) if echo else 0 for r in reqs]
        self.started = [False] * len(reqs)
        self.dones: list[core.Done] = []

    def render(self, item: tuple[int, core.Event]) -> list[dict[str, Any]]:
        index, event = item
        req = self.reqs[index]
        out: list[dict[str, Any]] = []
        if self.echo and not self.started[index]:
            out.append(tr.completion_chunk(self.meta, tr.completion_choice(index, req.prompt, None, None)))
        self.started[index] = True
        if isinstance(event, core.TextDelta):
            logprobs = (tr.completion_logprobs(event.logprobs, req.top_logprobs, self.offsets[index])
                        if req.logprobs else None)
            self.offsets[index] += len(event.text)
            out.append(tr.completion_chunk(self.meta, tr.completion_choice(index, event.text, None, logprobs)))
        elif isinstance(event, core.Done):
            self.dones.append(event)
            out.append(tr.completion_chunk(self.meta, tr.completion_choice(index, "", event, None)))
            if self.include_usage and len(self.dones) == len(self.reqs):
                last = tr.completion(self.meta, [], self.dones)
                out.append(last)
        return out


@router.post("/completions")
async def completions(body: wire.CompletionRequest, request: Request, inference: InferenceDep,
                      registry: RegistryDep, settings: SettingsDep) -> Response:
    reqs = tr.completion_requests(body)
    meta = _reply_meta(inference, registry, "cmpl", body.model)
    events = merged([inference.generate(r) for r in reqs], settings.num_parallel)
    echo = bool(body.echo)
    if not body.stream:
        pairs = await until_disconnected(request, collect(events))
        choices, dones = [], []
        for index, req in enumerate(reqs):
            result = core.collect([event for i, event in pairs if i == index])
            prefix = req.prompt if echo else ""
            logprobs = tr.completion_logprobs(result.logprobs, req.top_logprobs, len(prefix)) if req.logprobs else None
            choices.append(tr.completion_choice(index, prefix + result.text, result.done, logprobs))
            dones.append(result.done)
        return _json(tr.completion(meta, choices, dones))
    first, rest = await prime(request, events)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _CompletionChunks(meta, reqs, echo, include_usage)
    return stream_response(sse_lines(first, rest, chunks.render, _error_event), "text/event-stream", _SSE_HEADERS)


# embeddings ------------------------------------------------------------------------------------
@router.post("/embeddings")
async def embeddings(body: wire.EmbeddingRequest, request: Request, inference: InferenceDep) -> Response:
    req = tr.embed_request(body)
    result = await until_disconnected(request, inference.embed(req))
    return _json(tr.embeddings(result, body.encoding_format))


# models ----------------------------------------------------------------------------------------
@router.get("/models")
async def list_models(inference: InferenceDep, registry: RegistryDep) -> Response:
    data = [tr.model_object(e.name, int(e.modified_at.timestamp())) for e in registry.list()]
    listed = {item["id"] for item in data}
    now = int(time.time())
    for routed in inference.routed_models():  # models of upstream servers
        if routed.name not in listed:
            listed.add(routed.name)
            data.append(tr.model_object(routed.name, now))
    return _json({"object": "list", "data": data})


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, inference: InferenceDep, registry: RegistryDep) -> Response:
    router = inference.router
    if _upstream_only(inference, model_id) and router is not None and router.knows(model_id):
        return _json(tr.model_object(model_id, int(time.time())))
    try:
        entry = registry.get(model_id)
    except BadRequest:  # a name no model can have: for a lookup that is "no such model", as OpenAI says
        raise ModelNotFound(model_id) from None
    return _json(tr.model_object(entry.name, int(entry.modified_at.timestamp())))
