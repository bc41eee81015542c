"""Chat conversations of the web UI, kept in the database per principal (API key, user or anonymous).

A conversation is a small document: settings (model, system prompt, options) and its messages.
Messages are stored as one JSON text, since they are always read and written as a whole by the UI;
only the list needs the cheap columns (title, model, times, message count).
"""

from __future__ import annotations

import builtins
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from deskml.core.errors import NotFound, PayloadTooLarge
from deskml.core.principal import Principal
from deskml.services.db import Base, Database, LongText, UtcDateTime, utcnow

# One conversation's messages as JSON text; a UI session that pastes whole books still fits, a runaway
# client does not fill the database.
MAX_MESSAGES_BYTES = 16 << 20


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (sa.Index("ix_conversations_owner_updated", "owner", "updated_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(220))
    title: Mapped[str] = mapped_column(sa.String(200))
    model: Mapped[str] = mapped_column(sa.String(255))
    system: Mapped[str | None] = mapped_column(LongText, nullable=True)
    options: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    messages: Mapped[str] = mapped_column(LongText)  # JSON array
    message_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    title: str
    model: str
    system: str | None
    options: dict[str, Any] | None
    messages: list[dict[str, Any]] | None  # None in listings
    message_count: int
    created_at: datetime
    updated_at: datetime


def owner_of(principal: Principal) -> str:
    # The kind keeps a user named like a key id apart from that key.
    return f"{principal.kind}:{principal.id}"


def _encode(messages: list[dict[str, Any]]) -> str:
    text = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_MESSAGES_BYTES:
        raise PayloadTooLarge(f"a conversation holds at most {MAX_MESSAGES_BYTES >> 20} MB of messages: "
                              "start a new one")
    return text


def _out(row: ConversationRow, with_messages: bool) -> Conversation:
    return Conversation(
        id=row.id, title=row.title, model=row.model, system=row.system, options=row.options,
        messages=json.loads(row.messages) if with_messages else None, message_count=row.message_count,
        created_at=row.created_at, updated_at=row.updated_at,
    )


class ConversationStore:
    """Synchronous database access; the routes call it from worker threads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, owner: str, limit: int) -> list[Conversation]:
        query = (sa.select(ConversationRow).where(ConversationRow.owner == owner)
                 .order_by(ConversationRow.updated_at.desc(), ConversationRow.id).limit(limit))
        with self.db.session() as session:
            return [_out(row, False) for row in session.scalars(query)]

    def create(self, owner: str, title: str, model: str, system: str | None, options: dict[str, Any] | None,
               messages: builtins.list[dict[str, Any]]) -> Conversation:
        now = utcnow()
        row = ConversationRow(id=uuid.uuid4().hex, owner=owner, title=title, model=model, system=system,
                              options=options, messages=_encode(messages), message_count=len(messages),
                              created_at=now, updated_at=now)
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return _out(row, True)

    def get(self, owner: str, conversation_id: str) -> Conversation:
        with self.db.session() as session:
            return _out(self._row(session, owner, conversation_id), True)

    def update(self, owner: str, conversation_id: str, changes: dict[str, Any]) -> Conversation:
        """Replace the fields in `changes` (title, model, system, options, messages)."""
        with self.db.session() as session:
            row = self._row(session, owner, conversation_id)
            for field in ("title", "model", "system", "options"):
                if field in changes:
                    setattr(row, field, changes[field])
            if "messages" in changes:
                row.messages = _encode(changes["messages"])
                row.message_count = len(changes["messages"])
            row.updated_at = utcnow()
            session.flush()
            return _out(row, True)

    def delete(self, owner: str, conversation_id: str) -> None:
        with self.db.session() as session:
            session.delete(self._row(session, owner, conversation_id))

    @staticmethod
    def _row(session: Session, owner: str, conversation_id: str) -> ConversationRow:
        row = session.get(ConversationRow, conversation_id)
        # Someone else's conversation is "not found": its existence is nobody else's business.
        if row is None or row.owner != owner:
            raise NotFound(f"conversation {conversation_id!r} not found")
        return row
