"""Seed-style ML-backend routes for speech and images, thin handlers over the media service.

`/api/audio/transcribe` takes the multipart field `audio` (as the seed's Dart client names it),
`/api/images/stylize` the field `image`; `/api/audio/speak` answers with the audio file itself
unless the request asks for `"base64": true`.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from deskml.api.backend import media_schemas as wire
from deskml.api.deps import MediaDep, ServiceManagerDep, UploadLimitDep
from deskml.api.streaming import dumps, until_disconnected
from deskml.api.uploads import read_upload
from deskml.core import media as m
from deskml.core.languages import language_code

router = APIRouter()


def _json(body: Any) -> Response:
    return Response(dumps(body.model_dump()), media_type="application/json; charset=utf-8")


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)


@router.post("/api/audio/transcribe")
async def transcribe(
    request: Request,
    media: MediaDep,
    limit: UploadLimitDep,
    audio: UploadFile | None = File(None),
    model: str | None = Form(None),
    language: str | None = Form(None),
    task: str = Form("transcribe"),
) -> Response:
    if task not in {"transcribe", "translate"}:
        raise RequestValidationError([{"loc": ("task",), "msg": "must be 'transcribe' or 'translate'",
                                       "type": "value_error"}])
    data = await read_upload(audio, "audio", limit)
    req = m.TranscribeRequest(model=model or None, audio=data, language=language_code(language),
                              task="translate" if task == "translate" else "transcribe")
    result = await until_disconnected(request, media.transcribe_all(req))
    return _json(wire.TranscribeResponse(
        text=result.text, language=result.language, duration=result.duration, model=result.model,
        chunks=[wire.TranscriptChunk(timestamp=(s.start, s.end), text=s.text.strip()) for s in result.segments],
        time=_seconds(result.total_ns),
    ))


@router.post("/api/audio/speak")
async def speak(body: wire.SpeakRequest, request: Request, media: MediaDep) -> Response:
    req = m.SpeakRequest(model=body.model, text=body.text, voice=body.voice, speed=body.speed, format=body.format)
    result = await until_disconnected(request, media.speak(req))
    if body.base64:
        return _json(wire.SpeakResponse(
            audio=base64.b64encode(result.audio).decode("ascii"), format=result.format, media_type=result.media_type,
            sample_rate=result.sample_rate, duration=result.duration, model=result.model,
            time=_seconds(result.total_ns),
        ))
    headers = {"X-Model": result.model, "X-Sample-Rate": str(result.sample_rate),
               "X-Audio-Duration": f"{result.duration:.3f}", "X-Time": f"{_seconds(result.total_ns):.3f}"}
    return Response(result.audio, media_type=result.media_type, headers=headers)


@router.get("/api/audio/voices")
async def voices(services: ServiceManagerDep) -> wire.VoicesResponse:
    """The text-to-speech models installed here and the voices each can speak with."""
    specs = [s for s in services.specs if s.kind == "tts" and s.available()]
    return wire.VoicesResponse(models=[
        wire.VoiceModel(name=s.name, voices=[str(v) for v in s.options.get("voices", [])]) for s in specs
    ])


@router.post("/api/images/generate")
async def generate(body: wire.ImageGenerateRequest, request: Request, media: MediaDep) -> Response:
    req = m.ImageRequest(
        model=body.model, prompt=body.prompt, negative_prompt=body.negative_prompt, width=body.width,
        height=body.height, steps=body.steps, guidance_scale=body.guidance_scale, seed=body.seed, n=body.n,
        format=body.format,
    )
    done = await until_disconnected(request, media.generate_image_all(req))
    return _json(wire.ImageGenerateResponse(
        images=[base64.b64encode(image).decode("ascii") for image in done.images], seeds=done.seeds,
        width=done.width, height=done.height, steps=done.steps, format=done.format, model=done.model,
        time=_seconds(done.total_ns),
    ))


@router.post("/api/images/stylize")
async def stylize(
    request: Request,
    media: MediaDep,
    limit: UploadLimitDep,
    image: UploadFile | None = File(None),
    style_image: UploadFile | None = File(None),
    style: str = Form("0"),
    strength: float = Form(1.0),
    preserve_color: bool = Form(False),
    model: str | None = Form(None),
    format: str = Form("png"),
) -> Response:
    try:
        form = wire.StylizeForm.model_validate({"style": style, "strength": strength, "preserve_color": preserve_color,
                                                "model": model, "format": format})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    photo = await read_upload(image, "image", limit)
    style_bytes = await read_upload(style_image, "style_image", limit) if style_image is not None else None
    req = m.StyleRequest(model=form.model or None, image=photo, style=form.style, style_image=style_bytes,
                         strength=form.strength, preserve_color=form.preserve_color, format=form.format)
    result = await until_disconnected(request, media.stylize(req))
    return _json(wire.StylizeResponse(
        image=base64.b64encode(result.image).decode("ascii"), width=result.width, height=result.height,
        format=result.format, model=result.model, time=_seconds(result.total_ns),
    ))
