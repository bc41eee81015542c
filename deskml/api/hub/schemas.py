"""Wire types of deskml's own model-hub routes (the catalog and disk usage, for UIs and scripts)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CatalogModel(BaseModel):
    name: str
    aliases: list[str]
    kind: str
    format: str
    family: str
    parameter_size: str
    quantization: str | None
    description: str
    license: str
    capabilities: list[str]
    min_ram_mb: int
    size: int
    installed: bool


class CatalogResponse(BaseModel):
    models: list[CatalogModel]


class UsageModel(BaseModel):
    name: str
    kind: str
    size: int
    shared: int
    package: str | None = Field(None, description="The pip package with a bundled model's files; none: the store.")


class UsageResponse(BaseModel):
    models: list[UsageModel]
    blobs: int
    blob_bytes: int
    unreferenced_bytes: int
    partial_bytes: int
    free_bytes: int
    package_bytes: int = Field(0, description="Bytes of bundled models inside installed packages, outside the store.")
