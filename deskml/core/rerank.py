"""Internal request and result types for reranking documents against a query."""

from __future__ import annotations

from pydantic import BaseModel


class RerankRequest(BaseModel):
    model: str | None = None  # None = the default embedding model
    query: str
    documents: list[str]
    top_n: int | None = None


class RerankHit(BaseModel):
    index: int  # position in the request's documents
    score: float  # cosine similarity of query and document embeddings, in [-1, 1]


class RerankResult(BaseModel):
    model: str
    hits: list[RerankHit]  # best first, at most top_n
    prompt_tokens: int = 0
    load_ns: int = 0
    total_ns: int = 0
