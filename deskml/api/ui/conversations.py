"""`/api/conversations`: the web UI's chats, stored server-side per principal (inference scope).

Each caller sees only its own conversations; another caller's id is a 404. The chat itself goes
through `/api/chat` like any client's: these routes only keep what the UI shows.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from deskml.api.deps import DatabaseDep, PrincipalDep
from deskml.api.ui import schemas as wire
from deskml.services.conversations import Conversation, ConversationStore, owner_of

router = APIRouter()


def _store(db: DatabaseDep) -> ConversationStore:
    return ConversationStore(db)


def _owner(principal: PrincipalDep) -> str:
    return owner_of(principal)


StoreDep = Annotated[ConversationStore, Depends(_store)]
OwnerDep = Annotated[str, Depends(_owner)]


def _summary(item: Conversation) -> wire.ConversationSummary:
    return wire.ConversationSummary(id=item.id, title=item.title, model=item.model,
                                    message_count=item.message_count, created_at=item.created_at,
                                    updated_at=item.updated_at)


def _full(item: Conversation) -> wire.ConversationOut:
    return wire.ConversationOut(**_summary(item).model_dump(), system=item.system, options=item.options,
                                messages=[wire.Message.model_validate(m) for m in item.messages or []])


def _messages(messages: list[wire.Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


@router.get("/api/conversations")
async def list_conversations(store: StoreDep, owner: OwnerDep,
                             limit: int = Query(200, ge=1, le=1000)) -> wire.ConversationList:
    items = await asyncio.to_thread(store.list, owner, limit)
    return wire.ConversationList(conversations=[_summary(i) for i in items])


@router.post("/api/conversations", status_code=201)
async def create_conversation(body: wire.ConversationCreate, store: StoreDep, owner: OwnerDep) -> wire.ConversationOut:
    item = await asyncio.to_thread(store.create, owner, body.title.strip() or "New chat",
                                   body.model, body.system, body.options, _messages(body.messages))
    return _full(item)


@router.get("/api/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, store: StoreDep, owner: OwnerDep) -> wire.ConversationOut:
    return _full(await asyncio.to_thread(store.get, owner, conversation_id))


@router.patch("/api/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, body: wire.ConversationUpdate,
                              store: StoreDep, owner: OwnerDep) -> wire.ConversationOut:
    changes: dict[str, Any] = {}
    for field in body.model_fields_set:
        value = getattr(body, field)
        if field == "messages":
            changes["messages"] = _messages(value or [])
        elif field == "title":
            if value is not None:
                changes["title"] = value.strip() or "New chat"
        elif field == "model":
            if value is not None:
                changes["model"] = value
        else:
            changes[field] = value
    item = await asyncio.to_thread(store.update, owner, conversation_id, changes)
    return _full(item)


@router.delete("/api/conversations/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, store: StoreDep, owner: OwnerDep) -> Response:
    await asyncio.to_thread(store.delete, owner, conversation_id)
    return Response(status_code=204)
