"""The seed's ML-backend routes: `/health`, `/api/llm/generate`, `/api/vision/{classify,ocr,detect}`.

Wire-exact with the seed's Dart `MLBackendService` (multipart field `image`, JSON
`{prompt, max_length}`, replies with `success`, `model`, `time`). Uploads are read into memory
under DESKML_MAX_UPLOAD_MB; the client's file name is never used for anything.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, File, Form, Request, UploadFile

from deskml import __version__
from deskml.api.backend import schemas as wire
from deskml.api.backend import translate as tr
from deskml.api.deps import (
    HistoryDep,
    InferenceDep,
    ManagerDep,
    RegistryDep,
    ServiceManagerDep,
    ServiceTasksDep,
    SettingsDep,
    UploadLimitDep,
)
from deskml.api.streaming import collect, until_disconnected
from deskml.api.uploads import read_upload
from deskml.core.errors import DeskmlError
from deskml.core.types import collect as fold_events

router = APIRouter()


@router.get("/health")
async def health(settings: SettingsDep, registry: RegistryDep, manager: ManagerDep, services: ServiceManagerDep,
                 history: HistoryDep) -> wire.HealthResponse:
    default = settings.default_model
    try:
        llm_name = registry.get(default).name
        llm_available = True
    except DeskmlError:
        llm_name, llm_available = default, False
    llm_loaded = any(item.entry.name == llm_name for item in manager.loaded())
    loaded = {item.spec.name for item in services.loaded()}
    models = [(s.kind, s.name, s.available(), s.name in loaded) for s in services.specs]
    reply = tr.health(llm_name, llm_available, llm_loaded, models, __version__)
    if history is not None:
        reply.history = wire.HistoryHealth(**history.status())
    return reply


@router.post("/api/llm/generate")
async def llm_generate(body: wire.LlmGenerateRequest, request: Request, inference: InferenceDep,
                       settings: SettingsDep) -> wire.LlmGenerateResponse:
    started = time.perf_counter_ns()
    core_request = tr.generate_request(body, settings.default_model)
    events = await until_disconnected(request, collect(inference.generate(core_request)))
    return tr.generate_response(fold_events(events), core_request.model, time.perf_counter_ns() - started)


@router.post("/api/vision/classify")
async def classify(
    request: Request,
    tasks: ServiceTasksDep,
    limit: UploadLimitDep,
    image: UploadFile | None = File(None, description="The picture (JPEG, PNG, WebP, ...)."),
    model: str | None = Form(None, description="A classification model; default efficientnet-lite0."),
    top_k: int = Form(5, description="How many predictions to return."),
) -> wire.ClassifyResponse:
    data = await read_upload(image, "image", limit)
    result = await until_disconnected(request, tasks.classify(model or None, data, top_k))
    return tr.classify_response(result)


@router.post("/api/vision/ocr")
async def ocr(
    request: Request,
    tasks: ServiceTasksDep,
    limit: UploadLimitDep,
    image: UploadFile | None = File(None, description="The picture with text."),
    model: str | None = Form(None, description="An OCR model; default pp-ocrv4."),
) -> wire.OcrResponse:
    data = await read_upload(image, "image", limit)
    result = await until_disconnected(request, tasks.ocr(model or None, data))
    return tr.ocr_response(result)


@router.post("/api/vision/detect")
async def detect(
    request: Request,
    tasks: ServiceTasksDep,
    limit: UploadLimitDep,
    image: UploadFile | None = File(None, description="The picture."),
    model: str | None = Form(None, description="A detector; default yolov3-tiny, or a NAME.onnx you added."),
    threshold: float | None = Form(None, description="Lowest score to report (default 0.25)."),
) -> wire.DetectResponse:
    data = await read_upload(image, "image", limit)
    result = await until_disconnected(request, tasks.detect(model or None, data, threshold))
    return tr.detect_response(result)
