"""Wire types of the rerank API as Jina (`/v1/rerank`) and Cohere clients send and read them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_DOCUMENTS = 1000


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")  # Cohere lets callers attach fields; we only read text

    text: str


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. max_chunks_per_doc, rank_fields: accepted, ignored

    model: str | None = Field(None, description="An embedding model; default: the first one installed.")
    query: str
    documents: list[str | Document] = Field(max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: Document | None = None


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    object: str = "rerank"
    model: str
    results: list[RerankResult]
    usage: Usage
