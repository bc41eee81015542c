"""Wire types of the seed's ML-backend API, field for field as its Flask server and Dart client use them.

Every reply carries `success`; errors are `{success: false, error}` (rendered by api/errors.py).
`time` is seconds, rounded to two decimals as the seed's services do.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_LENGTH_LIMIT = 8192


class ModelStatus(BaseModel):
    name: str
    available: bool
    loaded: bool


class HistoryHealth(BaseModel):
    """The request-history writer: `ok` is false while writes fail or the writer has stopped."""

    ok: bool
    running: bool
    pending: int = Field(description="Records waiting to be written.")
    written: int
    dropped: int = Field(description="Records never written (buffer full, or refused by the database).")
    write_errors: int = Field(description="Write attempts that failed.")
    last_error: str | None = None
    last_error_at: str | None = None


class HealthResponse(BaseModel):
    status: str = "ok"
    # The seed reads `services.llm` / `services.vision` as "ready" flags; deskml adds one flag per
    # group of service models it knows (embeddings, audio, images, ...).
    services: dict[str, bool]
    models: dict[str, list[ModelStatus]] = Field(default_factory=dict)
    version: str = ""
    # deskml extra; absent when DESKML_HISTORY=false. A failing writer does not change `status`:
    # the server still answers, and the seed's clients read `status` as "reachable".
    history: HistoryHealth | None = None


class LlmGenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1)
    max_length: int = Field(200, ge=1, le=MAX_LENGTH_LIMIT, description="Most new tokens to generate.")
    model: str | None = Field(None, description="deskml extra: an LLM other than DESKML_DEFAULT_MODEL.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)


class LlmGenerateResponse(BaseModel):
    success: bool = True
    text: str
    model: str
    time: float


class PredictionOut(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    success: bool = True
    predictions: list[PredictionOut]
    model: str
    time: float


class OcrLineOut(BaseModel):
    text: str
    confidence: float
    box: list[float]
    polygon: list[list[float]]


class OcrResponse(BaseModel):
    success: bool = True
    text: str
    lines: list[OcrLineOut]
    model: str
    time: float
    width: int
    height: int


class DetectionOut(BaseModel):
    label: str
    score: float
    box: list[float]


class DetectResponse(BaseModel):
    success: bool = True
    detections: list[DetectionOut]
    model: str
    time: float
    width: int
    height: int
