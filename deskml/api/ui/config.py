"""`/api/ui/config`: what the web UI needs to offer the right models and explain the missing ones.

The chat page's default model (DESKML_DEFAULT_MODEL), and per kind of service model the models that
can run and, when none can, what is missing and the command that adds it.
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter
from pydantic import BaseModel, Field

from deskml.api.deps import RegistryDep, ServiceManagerDep, SettingsDep
from deskml.core.errors import DeskmlError
from deskml.core.extras import source_checkout
from deskml.runtime import names
from deskml.runtime.kinds import KIND_LABELS
from deskml.runtime.service_models.manager import ServiceManager

router = APIRouter()


class KindStatus(BaseModel):
    label: str = Field(description="What models of this kind do, in words.")
    available: list[str] = Field(description="Models of this kind that can run here.")
    missing: list[str] = Field(default_factory=list, description="Python modules this kind needs and lacks.")
    install: str | None = Field(None, description="The command that adds this kind, when none can run.")
    where: str | None = Field(None, description="The folder to run `install` in (a source checkout), if any.")
    note: str | None = Field(None, description="A sentence for the UI when no model of this kind can run.")


class UiConfig(BaseModel):
    default_model: str = Field(description="DESKML_DEFAULT_MODEL as its canonical name: the chat page's default.")
    kinds: dict[str, KindStatus]


def kind_status(services: ServiceManager, kind: str) -> KindStatus:
    specs = [s for s in services.specs if s.kind == kind]
    label = KIND_LABELS.get(kind, kind)
    available = [names.display(s.name) for s in specs if s.available()]
    if available or not specs:
        return KindStatus(label=label, available=available)
    first = specs[0]  # specs are in order of preference: the one to install
    missing = first.missing()
    checkout = source_checkout()
    where = f" (in {checkout.root})" if checkout is not None else ""
    if missing:
        note = (f"No {label} model can run here: {', '.join(missing)} not installed. "
                f"Add it{where} with: {first.install_command} — then restart deskml.")
    else:
        note = f"No {label} model is installed here. Add one{where} with: {first.install_command}"
    return KindStatus(label=label, available=[], missing=missing, install=first.install_command, note=note,
                      where=str(checkout.root) if checkout is not None else None)


@router.get("/api/ui/config")
async def ui_config(settings: SettingsDep, registry: RegistryDep, services: ServiceManagerDep) -> UiConfig:
    default = settings.default_model
    with contextlib.suppress(DeskmlError):  # a bad name is shown as set; the chat page then offers the rest
        default = registry.canonical(default)
    kinds = sorted({s.kind for s in services.specs} | {"embedding", "classify", "ocr", "detect", "asr", "tts"})
    return UiConfig(default_model=default, kinds={kind: kind_status(services, kind) for kind in kinds})
