"""Model-management translation for the Ollama dialect: `/api/create` and `/api/show`."""

from __future__ import annotations

import asyncio

from deskml.api.ollama import schemas as wire
from deskml.api.ollama import translate as tr
from deskml.core.errors import BadRequest
from deskml.runtime import modelfile
from deskml.runtime.create import CreateSpec, create
from deskml.runtime.registry import Registry
from deskml.runtime.service_models.listing import KIND_CAPABILITIES, ServiceModelCard
from deskml.runtime.upstream.router import RoutedModel


def create_spec(body: wire.CreateRequest) -> CreateSpec:
    name = body.model or body.name
    if not name:
        raise BadRequest("model is required", param="model")
    spec = CreateSpec(name=name)
    if body.modelfile:  # older clients send the Modelfile text itself
        parsed = modelfile.parse(body.modelfile)
        spec.from_ = parsed.from_
        spec.system, spec.template = parsed.system, parsed.template
        spec.parameters, spec.messages, spec.license = parsed.parameters, parsed.messages, parsed.license
        if parsed.adapters:
            spec.adapters = {a: a for a in parsed.adapters}
        spec.draft = parsed.draft
    spec.from_ = body.from_ or spec.from_
    spec.files = dict(body.files or {})
    spec.adapters = dict(body.adapters or {}) or spec.adapters
    if body.system is not None:
        spec.system = body.system
    if body.template is not None:
        spec.template = body.template
    if body.parameters:
        spec.parameters.update(body.parameters)
    if body.messages:
        spec.messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    if body.license:
        spec.license = [body.license] if isinstance(body.license, str) else list(body.license)
    spec.quantize = body.quantize
    if body.draft is not None:
        spec.draft = body.draft
    return spec


async def create_model(registry: Registry, body: wire.CreateRequest, *, local_files: bool = True) -> list[str]:
    spec = create_spec(body)
    # Hashing or copying a multi-GB GGUF must not block the event loop.
    _entry, statuses = await asyncio.to_thread(create, registry, spec, local_files=local_files)
    return statuses


def show_model(registry: Registry, name: str, verbose: bool) -> wire.ShowResponse:
    entry = registry.get(name)
    manifest = entry.manifest
    info = registry.gguf_info(entry)
    template = manifest.template or info.chat_template or ""
    # A bundled model's file lives inside an installed package: a path there is nothing to copy.
    source = entry.name if manifest.builtin else manifest.parent or registry.store.blob_path(entry.digest).as_posix()
    if manifest.kind == "llm":
        capabilities = ["completion", "tools"]
    else:
        capabilities = manifest.capabilities or KIND_CAPABILITIES.get(manifest.kind, [manifest.kind])
    return wire.ShowResponse(
        license="\n".join(manifest.license) or str(info.metadata.get("general.license", "")),
        modelfile=modelfile.render(str(source), manifest.system, manifest.template, manifest.parameters,
                                   manifest.messages, manifest.license, name=entry.name, draft=entry.draft_name),
        parameters=tr.parameters_text(manifest.parameters),
        template=template,
        system=manifest.system or "",
        details=tr.entry_details(manifest, info),
        model_info=tr.model_info(info, verbose),
        capabilities=capabilities,
        modified_at=tr.timestamp(manifest.modified_at),
        messages=manifest.messages or None,
        kind=manifest.kind,
    )


def show_service(card: ServiceModelCard) -> wire.ShowResponse:
    """/api/show for an embedding, vision, speech or image model: what deskml knows of it (no GGUF)."""
    family = [card.family] if card.family else None
    return wire.ShowResponse(
        license=card.license,
        modelfile=f"# {card.description}\nFROM {card.name}\n" if card.description else f"FROM {card.name}\n",
        details=wire.ModelDetails(format=card.format, family=card.family, families=family,
                                  parameter_size=card.parameter_size),
        model_info={"general.architecture": card.family, "general.parameter_count_label": card.parameter_size,
                    "deskml.kind": card.kind},
        capabilities=card.capabilities,
        modified_at=tr.timestamp(card.modified_at),
        kind=card.kind,
    )


def show_routed(routed: RoutedModel) -> wire.ShowResponse:
    """/api/show for a model only an upstream serves: the facts its listing gave."""
    remote = routed.model
    return wire.ShowResponse(
        modelfile=f"# served by upstream '{routed.upstream}' as {remote.name}\nFROM {routed.name}\n",
        details=wire.ModelDetails(format=f"upstream:{routed.upstream}", family=remote.family,
                                  parameter_size=remote.parameter_size, quantization_level=remote.quantization),
        model_info={"deskml.upstream": routed.upstream, "deskml.upstream_model": remote.name},
        capabilities=["completion"],
        modified_at=tr.timestamp(),
    )
