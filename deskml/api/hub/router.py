"""deskml's model-hub routes beside Ollama's `/api/pull`: search the catalog, see disk usage."""

from __future__ import annotations

from fastapi import APIRouter, Query

from deskml.api.deps import HubDep, RegistryDep
from deskml.api.hub import schemas as wire

router = APIRouter()


@router.get("/api/hub/catalog")
async def catalog(hub: HubDep, registry: RegistryDep,
                  q: str = Query("", description="Words to match")) -> wire.CatalogResponse:
    models = [
        wire.CatalogModel(
            name=e.name, aliases=e.aliases, kind=e.kind, format=e.format, family=e.family,
            parameter_size=e.parameter_size, quantization=e.quantization, description=e.description,
            license=e.license, capabilities=e.capabilities, min_ram_mb=e.min_ram_mb, size=e.size,
            installed=registry.find(e.name) is not None,
        )
        for e in hub.catalog.search(q)
    ]
    return wire.CatalogResponse(models=models)


@router.get("/api/hub/usage")
async def usage(registry: RegistryDep) -> wire.UsageResponse:
    found = registry.usage()
    return wire.UsageResponse(
        models=[wire.UsageModel(name=m.name, kind=m.kind, size=m.size, shared=m.shared, package=m.package)
                for m in found.models],
        blobs=found.blobs, blob_bytes=found.blob_bytes, unreferenced_bytes=found.unreferenced_bytes,
        partial_bytes=found.partial_bytes, free_bytes=found.free_bytes, package_bytes=found.package_bytes,
    )
