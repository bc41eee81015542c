"""OpenAI audio and image routes: thin handlers over the media service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from deskml.api.deps import MediaDep, UploadLimitDep
from deskml.api.openai import media_schemas as wire
from deskml.api.openai import media_translate as tr
from deskml.api.streaming import dumps, until_disconnected
from deskml.api.uploads import read_upload
from deskml.runtime.service_models.media import MediaService

router = APIRouter()


def _form(data: dict[str, Any]) -> wire.TranscriptionForm:
    try:
        return wire.TranscriptionForm.model_validate(data)
    except ValidationError as exc:  # rendered as a 400 in the dialect's shape, like a JSON body error
        raise RequestValidationError(exc.errors()) from exc


async def _transcribe(request: Request, media: MediaService, limit: int, task: str, file: UploadFile | None,
                      form: wire.TranscriptionForm) -> Response:
    audio = await read_upload(file, "file", limit)
    req = tr.transcribe_request(form, audio, task)
    transcript = await until_disconnected(request, media.transcribe_all(req))
    body, media_type = tr.transcription_body(transcript, form)
    if isinstance(body, str):
        return Response(body, media_type=media_type)
    return Response(dumps(body), media_type=media_type)


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    request: Request,
    media: MediaDep,
    limit: UploadLimitDep,
    file: UploadFile | None = File(None),
    model: str | None = Form(None),
    language: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    temperature: float = Form(0.0),
    timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
) -> Response:
    form = _form({
        "model": model, "language": language, "prompt": prompt, "response_format": response_format,
        "temperature": temperature, "timestamp_granularities": timestamp_granularities or [],
    })
    return await _transcribe(request, media, limit, "transcribe", file, form)


@router.post("/v1/audio/translations")
async def translations(
    request: Request,
    media: MediaDep,
    limit: UploadLimitDep,
    file: UploadFile | None = File(None),
    model: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    temperature: float = Form(0.0),
) -> Response:
    form = _form({
        "model": model, "prompt": prompt, "response_format": response_format, "temperature": temperature,
    })
    return await _transcribe(request, media, limit, "translate", file, form)


@router.post("/v1/audio/speech")
async def speech(body: wire.SpeechRequest, request: Request, media: MediaDep) -> Response:
    result = await until_disconnected(request, media.speak(tr.speak_request(body)))
    headers = {"X-Sample-Rate": str(result.sample_rate), "X-Audio-Duration": f"{result.duration:.3f}"}
    return Response(result.audio, media_type=result.media_type, headers=headers)


@router.post("/v1/images/generations")
async def image_generations(body: wire.ImageGenerationRequest, request: Request, media: MediaDep) -> JSONResponse:
    done = await until_disconnected(request, media.generate_image_all(tr.image_request(body)))
    return JSONResponse(tr.images_response(done, body.response_format).model_dump(exclude_none=True))
