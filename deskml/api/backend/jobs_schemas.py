"""Wire types of the job routes: the seed's `/api/train` and `/api/task/<id>/status` (field for
field as its Flask `task_status` and Dart `pollTask` use them), and deskml's `/api/jobs`,
`/api/files` and `/api/classify`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset: str = Field(description="An uploaded file id (file-...), or a path inside DESKML_DATASETS_DIR.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="kind (text|image; default from the dataset), name, embedding (text), test_size, C, "
        "max_iter, seed.",
    )


class TrainResponse(BaseModel):
    success: bool = True
    task_id: str
    status_url: str


class TaskStatus(BaseModel):
    # CANCELLED is reported as FAILURE here: the seed's pollTask stops only on SUCCESS or FAILURE.
    state: Literal["PENDING", "PROGRESS", "SUCCESS", "FAILURE"]
    current: int
    total: int
    status: str
    result: dict[str, Any] | None = None


class FileOut(BaseModel):
    success: bool = True
    id: str
    filename: str
    purpose: str
    format: str
    bytes: int
    sha256: str
    summary: dict[str, Any]
    created_at: datetime


class JobOut(BaseModel):
    id: str
    kind: str
    state: Literal["PENDING", "PROGRESS", "SUCCESS", "FAILURE", "CANCELLED"]
    current: int
    total: int
    progress: float = Field(description="current/total, 0..1")
    message: str
    result: dict[str, Any] | None
    error: str | None
    stats: dict[str, Any]
    params: dict[str, Any]
    owner: str
    executor: str
    worker: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobList(BaseModel):
    jobs: list[JobOut]


class ClassifyTextRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str]
    top_k: int | None = Field(None, description="Labels per input (default: all, best first).")


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifiedText(BaseModel):
    label: str
    score: float
    labels: list[LabelScore]


class ClassifyTextResponse(BaseModel):
    model: str
    results: list[ClassifiedText]
    total_duration: int
