"""Wire types of deskml's own admin routes: login, API keys, users, request history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    scopes: list[str]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] | None = None
    limits: dict[str, Any] | None = None


class KeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    limits: dict[str, Any] | None
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=8, max_length=1024)
    scopes: list[str] | None = None
    limits: dict[str, Any] | None = None


class UserOut(BaseModel):
    username: str
    scopes: list[str]
    limits: dict[str, Any] | None
    created_at: datetime
    last_login_at: datetime | None = None


class UserList(BaseModel):
    users: list[UserOut]


class HistoryItem(BaseModel):
    id: int
    request_id: str
    created_at: datetime
    dialect: str
    method: str
    path: str
    status: int
    model: str | None
    backend: str | None
    node: str | None = Field(None, description="The node that answered (DESKML_NODE_NAME); null on older rows.")
    principal_id: str | None
    principal_kind: str | None
    client: str | None
    cache: str | None
    duration_ns: int
    queue_ns: int
    load_ns: int
    prompt_eval_ns: int
    eval_ns: int
    ttft_ns: int | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    input: Any = None
    output: Any = None
    extra: dict[str, Any] | None = None


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page; null at the end.")
