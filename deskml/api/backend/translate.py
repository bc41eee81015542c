"""Pure translation between the seed's ML-backend wire types and core types."""

from __future__ import annotations

from collections.abc import Iterable

from deskml.api.backend import schemas as wire
from deskml.core.types import GenerateRequest, GenerationResult, SamplingOptions
from deskml.core.vision import ClassifyResult, DetectResult, OcrResult

# Which `/health` flag a kind of service model counts towards; unknown kinds get their own flag.
KIND_GROUPS: dict[str, str] = {
    "embedding": "embeddings", "rerank": "embeddings",
    "classify": "vision", "ocr": "vision", "detect": "vision",
    "asr": "audio", "tts": "audio",
    "image": "images", "style": "images",
}


def seconds(total_ns: int) -> float:
    return round(total_ns / 1e9, 2)


def health(
    llm_name: str, llm_available: bool, llm_loaded: bool,
    service_models: Iterable[tuple[str, str, bool, bool]], version: str,
) -> wire.HealthResponse:
    """`service_models`: (kind, name, available, loaded) for every known service model."""
    services: dict[str, bool] = {"llm": llm_available}
    models: dict[str, list[wire.ModelStatus]] = {
        "llm": [wire.ModelStatus(name=llm_name, available=llm_available, loaded=llm_loaded)]
    }
    for kind, name, available, loaded in service_models:
        group = KIND_GROUPS.get(kind, kind)
        services[group] = services.get(group, False) or available
        models.setdefault(kind, []).append(wire.ModelStatus(name=name, available=available, loaded=loaded))
    return wire.HealthResponse(status="ok", services=services, models=models, version=version)


def generate_request(body: wire.LlmGenerateRequest, default_model: str) -> GenerateRequest:
    return GenerateRequest(
        model=body.model or default_model, prompt=body.prompt,
        options=SamplingOptions(num_predict=body.max_length, temperature=body.temperature, top_p=body.top_p),
    )


def generate_response(result: GenerationResult, model: str, total_ns: int) -> wire.LlmGenerateResponse:
    return wire.LlmGenerateResponse(text=result.text, model=result.done.model or model, time=seconds(total_ns))


def classify_response(result: ClassifyResult) -> wire.ClassifyResponse:
    return wire.ClassifyResponse(
        predictions=[wire.PredictionOut(label=p.label, score=round(p.score, 4)) for p in result.predictions],
        model=result.model, time=seconds(result.total_ns),
    )


def ocr_response(result: OcrResult) -> wire.OcrResponse:
    return wire.OcrResponse(
        text=result.text,
        lines=[wire.OcrLineOut(text=line.text, confidence=line.confidence, box=line.box, polygon=line.polygon)
               for line in result.lines],
        model=result.model, time=seconds(result.total_ns), width=result.width, height=result.height,
    )


def detect_response(result: DetectResult) -> wire.DetectResponse:
    return wire.DetectResponse(
        detections=[wire.DetectionOut(label=d.label, score=d.score, box=d.box) for d in result.detections],
        model=result.model, time=seconds(result.total_ns), width=result.width, height=result.height,
    )
