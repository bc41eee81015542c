"""Wire types of `/api/conversations`: the web UI's chats, kept per principal."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """A chat message as the UI shows it: Ollama's message plus the reply's measured figures."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    stats: dict[str, Any] | None = Field(
        None, description="tokens, tokens_per_second, ttft_ms, total_ms, stopped, error: what the UI measured.")


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field("New chat", max_length=200)
    model: str = Field("", max_length=255)
    system: str | None = None
    options: dict[str, Any] | None = None
    messages: list[Message] = Field(default_factory=list)


class ConversationUpdate(BaseModel):
    """Only the fields present are replaced."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=200)
    model: str | None = Field(None, max_length=255)
    system: str | None = None
    options: dict[str, Any] | None = None
    messages: list[Message] | None = None


class ConversationSummary(BaseModel):
    id: str
    title: str
    model: str
    message_count: int
    created_at: datetime
    updated_at: datetime


class ConversationOut(ConversationSummary):
    system: str | None
    options: dict[str, Any] | None
    messages: list[Message]


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]
