"""Image generation through Ollama's `/api/generate`, as Ollama does it for image models.

The request adds `width`, `height` and `steps` beside `prompt`; the stream sends
`{"completed": n, "total": m, "done": false}` lines while denoising and ends with
`{"image": "<base64 PNG>", "done": true}` (the official clients expose these as
`GenerateResponse.completed/total/image`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskml.api.ollama import schemas as wire
from deskml.api.ollama.translate import timestamp
from deskml.api.streaming import dumps, ndjson_lines, prime, stream_response, until_disconnected
from deskml.core import media as m
from deskml.core.errors import BadRequest, DeskmlError
from deskml.runtime.service_models.manager import ServiceManager
from deskml.runtime.service_models.media import MediaService


class ImageOptions(BaseModel):
    """The image fields of a generate request (top level, as the Ollama clients send them)."""

    model_config = ConfigDict(extra="ignore")

    width: int | None = Field(None, ge=0)
    height: int | None = Field(None, ge=0)
    steps: int | None = Field(None, ge=0)
    negative_prompt: str | None = None


def is_image_model(services: ServiceManager, name: str) -> bool:
    return bool(name) and services.find(name, "image") is not None


def image_request(body: wire.GenerateRequest) -> m.ImageRequest:
    try:
        extra = ImageOptions.model_validate(body.model_extra or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadRequest(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    options = body.options or {}
    seed = options.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise BadRequest("options.seed must be an integer", param="seed")
    return m.ImageRequest(
        model=body.model, prompt=body.prompt or "", negative_prompt=extra.negative_prompt,
        width=extra.width or None, height=extra.height or None, steps=extra.steps or None,  # 0 = model default
        seed=seed if seed is None or seed >= 0 else None,
    )


def _final(name: str, done: m.ImageDone | None, reason: str = "stop") -> dict[str, Any]:
    line: dict[str, Any] = {"model": name, "created_at": timestamp(), "response": "", "done": True,
                            "done_reason": reason}
    if done is not None:
        line["image"] = base64.b64encode(done.images[0]).decode("ascii")
        line["total_duration"] = done.total_ns
        line["load_duration"] = done.load_ns
    return line


async def generate(body: wire.GenerateRequest, request: Request, media: MediaService, stream: bool) -> Response:
    req = image_request(body)
    if not req.prompt.strip():  # like Ollama: an empty prompt just loads the model
        spec, _load_ns = await media.load(req.model, "image")
        return Response(dumps(_final(spec.name, None, "load")), media_type="application/json; charset=utf-8")
    name = media.image_spec(req.model).name
    if not stream:
        done = await until_disconnected(request, media.generate_image_all(req))
        return Response(dumps(_final(name, done)), media_type="application/json; charset=utf-8")

    first, rest = await prime(request, media.generate_image(req))

    def render(event: m.ImageEvent) -> list[dict[str, Any]]:
        if isinstance(event, m.ImageProgress):
            return [{"model": name, "created_at": timestamp(), "response": "", "done": False,
                     "completed": event.completed, "total": event.total}]
        return [_final(name, event)]

    def on_error(exc: Exception) -> dict[str, Any]:
        return {"error": exc.message if isinstance(exc, DeskmlError) else f"internal error: {type(exc).__name__}"}

    lines: AsyncIterator[str] = ndjson_lines(first, rest, render, on_error)
    return stream_response(lines, "application/x-ndjson")
