"""deskml's own routes: sign in (`/login`), API keys, users and request history (admin scope).

The auth middleware has already checked the scope by the time a handler runs.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query

from deskml.api.admin import schemas as wire
from deskml.api.deps import AuthDep, DatabaseDep
from deskml.core.errors import NotImplementedFeature
from deskml.services import history as hist
from deskml.services.auth import AuthService, CredentialStore, KeyInfo, UserInfo, parse_scopes

router = APIRouter()


def _required(auth: AuthService | None) -> AuthService:
    if auth is None:
        raise NotImplementedFeature("authentication is off on this server (DESKML_AUTH=off)")
    return auth


def _key(info: KeyInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "scopes": sorted(info.scopes), "limits": info.limits,
            "created_at": info.created_at, "revoked_at": info.revoked_at, "last_used_at": info.last_used_at}


def _user(info: UserInfo) -> dict[str, Any]:
    return {"username": info.username, "scopes": sorted(info.scopes), "limits": info.limits,
            "created_at": info.created_at, "last_login_at": info.last_login_at}


# sign in ---------------------------------------------------------------------------------------
@router.post("/login")
async def login(body: wire.LoginRequest, auth: AuthDep) -> wire.TokenResponse:
    return wire.TokenResponse(**await _required(auth).login(body.username, body.password))


@router.post("/login/refresh")
async def refresh(body: wire.RefreshRequest, auth: AuthDep) -> wire.TokenResponse:
    return wire.TokenResponse(**await _required(auth).refresh(body.refresh_token))


# API keys --------------------------------------------------------------------------------------
@router.get("/api/keys")
async def list_keys(db: DatabaseDep, revoked: bool = False) -> wire.KeyList:
    keys = await asyncio.to_thread(CredentialStore(db).list_keys, revoked)
    return wire.KeyList(keys=[wire.KeyOut(**_key(k)) for k in keys])


@router.post("/api/keys", status_code=201)
async def create_key(body: wire.KeyCreate, db: DatabaseDep) -> wire.KeyCreated:
    scopes = parse_scopes(body.scopes)
    info, plaintext = await asyncio.to_thread(CredentialStore(db).create_key, body.name, scopes, body.limits)
    return wire.KeyCreated(**_key(info), key=plaintext)


@router.delete("/api/keys/{id_or_name}")
async def revoke_key(id_or_name: str, db: DatabaseDep, auth: AuthDep) -> wire.KeyList:
    revoked = await asyncio.to_thread(CredentialStore(db).revoke_key, id_or_name)
    for info in revoked:
        if auth is not None:
            auth.forget(info.id)
    return wire.KeyList(keys=[wire.KeyOut(**_key(k)) for k in revoked])


# users -----------------------------------------------------------------------------------------
@router.get("/api/users")
async def list_users(db: DatabaseDep) -> wire.UserList:
    users = await asyncio.to_thread(CredentialStore(db).list_users)
    return wire.UserList(users=[wire.UserOut(**_user(u)) for u in users])


@router.post("/api/users", status_code=201)
async def create_user(body: wire.UserCreate, db: DatabaseDep) -> wire.UserOut:
    scopes = parse_scopes(body.scopes)
    info = await asyncio.to_thread(CredentialStore(db).create_user, body.username, body.password, scopes, body.limits)
    return wire.UserOut(**_user(info))


@router.delete("/api/users/{username}", status_code=204)
async def delete_user(username: str, db: DatabaseDep, auth: AuthDep) -> None:
    await asyncio.to_thread(CredentialStore(db).delete_user, username)
    if auth is not None:
        auth.forget_user(username)


# history ---------------------------------------------------------------------------------------
@router.get("/api/history")
async def history(
    db: DatabaseDep,
    model: str | None = None,
    user: str | None = Query(None, description="A key id or a user name."),
    status: str | None = Query(None, description="200, 4xx, ok or error (400 and up, or an error noted)."),
    dialect: str | None = None,
    node: str | None = Query(None, description="The node that answered (its DESKML_NODE_NAME)."),
    request_id: str | None = Query(None, description="Every row of one request, on each node it passed through."),
    row: int | None = Query(None, alias="id", description="One row, by its id."),
    method: str | None = Query(None, description="GET, POST, DELETE, ..."),
    path: str | None = Query(None, description="Paths starting with this, e.g. /api/chat or /v1/."),
    since: str | None = Query(None, description="ISO time, Unix seconds, or '1h' / '7d' ago."),
    until: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    content: bool = Query(True, description="Include request input and output."),
    ui: bool = Query(True, description="Include the web UI's own requests (its polling, marked with "
                     "'X-Deskml-Client: ui', and the page and its files); the History page sends ui=false."),
) -> wire.HistoryPage:
    q = hist.HistoryQuery(
        model=model, user=user, status=status, dialect=dialect, method=method, path=path, limit=limit, ui=ui,
        node=node, request_id=request_id, row_id=row,
        since=hist.parse_time(since, name="since") if since else None,
        until=hist.parse_time(until, name="until") if until else None,
        cursor=_cursor(cursor),
    )
    items, next_cursor = await asyncio.to_thread(hist.query, db, q, content=content)
    return wire.HistoryPage(items=[wire.HistoryItem(**i) for i in items], next_cursor=next_cursor)


def _cursor(value: str | None) -> tuple[datetime, int] | None:
    return hist.parse_cursor(value) if value else None
