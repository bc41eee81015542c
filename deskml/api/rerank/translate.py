"""Pure translation between the rerank wire types and the core rerank types."""

from __future__ import annotations

from deskml.api.rerank import schemas as wire
from deskml.core import rerank as core


def document_text(document: str | wire.Document) -> str:
    return document if isinstance(document, str) else document.text


def to_core(body: wire.RerankRequest) -> core.RerankRequest:
    return core.RerankRequest(
        model=body.model, query=body.query, documents=[document_text(d) for d in body.documents], top_n=body.top_n
    )


def to_wire(body: wire.RerankRequest, result: core.RerankResult, request_id: str) -> wire.RerankResponse:
    texts = [document_text(d) for d in body.documents]
    return wire.RerankResponse(
        id=request_id, model=result.model,
        results=[
            wire.RerankResult(
                index=hit.index, relevance_score=hit.score,
                document=wire.Document(text=texts[hit.index]) if body.return_documents else None,
            )
            for hit in result.hits
        ],
        usage=wire.Usage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
    )
