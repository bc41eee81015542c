"""Admin routes for the LAN and the router: pair a device (a new key + QR code), `GET /api/doctor`,
and the upstreams' live status. The auth middleware requires the admin scope for all of them."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from deskml.api.deps import AuthDep, DatabaseDep, ServicesDep, SettingsDep
from deskml.runtime.doctor import Report, Serving, diagnose
from deskml.services import pairing
from deskml.services.auth import CredentialStore, parse_scopes

router = APIRouter()


class PairRequest(BaseModel):
    name: str | None = Field(None, description="What the device is, e.g. 'pixel-8': names the new API key "
                             "(default: 'phone', or 'phone-2'… when taken).")
    scopes: str | list[str] = Field("inference", description="Scopes of the key: inference, models, admin or all.")
    urls: list[str] = Field(default_factory=list, description="Extra URLs to put first (e.g. a DNS name).")


class PairResponse(BaseModel):
    payload: pairing.PairPayload
    text: str = Field(description="The exact text the QR code carries.")
    svg: str = Field(description="The QR code as an SVG document.")
    png: str = Field(description="The QR code as a data: URL (PNG).")
    key_id: str | None = None


@router.post("/api/admin/pair", status_code=201)
async def pair(body: PairRequest, auth: AuthDep, db: DatabaseDep, settings: SettingsDep) -> PairResponse:
    key: str | None = None
    key_id: str | None = None
    if auth is not None:
        scopes = parse_scopes(body.scopes)
        store = CredentialStore(db)
        name = body.name
        if name is None:
            name = pairing.free_key_name({k.name for k in await asyncio.to_thread(store.list_keys)})
        info, key = await asyncio.to_thread(store.create_key, name, scopes, None)
        key_id = info.id
    payload = pairing.build_payload(settings, key, body.urls)
    png = base64.b64encode(pairing.qr_png(payload)).decode()
    return PairResponse(payload=payload, text=pairing.payload_text(payload), svg=pairing.qr_svg(payload),
                        png=f"data:image/png;base64,{png}", key_id=key_id)


@router.get("/api/doctor")
async def doctor(services: ServicesDep) -> Report:
    serving = Serving(registry=services.registry, history=services.history, router=services.router, db=services.db)
    return await diagnose(services.settings, serving)


@router.get("/api/admin/upstreams")
async def upstreams(services: ServicesDep) -> dict[str, Any]:
    router_ = services.router
    if router_ is None:
        return {"node": services.node_id, "routing": False, "backends": []}
    return {"node": router_.node_id, "routing": True, "backends": router_.status()}
