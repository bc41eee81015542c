"""`POST /v1/rerank` and `POST /api/rerank`: order documents by relevance to a query.

Scores are cosine similarities of sentence embeddings (all-minilm by default), so any embedding
model can rerank; errors follow the path's dialect (OpenAI error object under /v1, Ollama's
`{"error": ...}` under /api).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from deskml.api.deps import ServiceTasksDep
from deskml.api.rerank import schemas as wire
from deskml.api.rerank import translate as tr

router = APIRouter()


@router.post("/v1/rerank")
@router.post("/api/rerank")
async def rerank(body: wire.RerankRequest, tasks: ServiceTasksDep) -> JSONResponse:
    result = await tasks.rerank(tr.to_core(body))
    reply = tr.to_wire(body, result, f"rerank-{uuid.uuid4().hex}")
    return JSONResponse(reply.model_dump(exclude_none=True))
