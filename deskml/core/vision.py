"""Internal request and result types for image understanding: classification, OCR, detection.

Every dialect (the seed's ML-backend routes, and any later one) translates to and from these;
the runtime and engines only see these. Coordinates are pixels of the uploaded image after its
EXIF orientation is applied, origin top left.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    label: str
    score: float
    index: int = -1  # class index in the model's label list


class ClassifyResult(BaseModel):
    model: str
    predictions: list[Prediction]
    load_ns: int = 0
    total_ns: int = 0


class OcrLine(BaseModel):
    text: str
    confidence: float
    box: list[float]  # [x1, y1, x2, y2], the axis-aligned bounds of `polygon`
    polygon: list[list[float]]  # four [x, y] corners as the detector found them (text may be tilted)


class OcrResult(BaseModel):
    model: str
    lines: list[OcrLine]
    width: int
    height: int
    load_ns: int = 0
    total_ns: int = 0

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class Detection(BaseModel):
    label: str
    score: float
    box: list[float]  # [x1, y1, x2, y2]
    class_id: int = -1


class DetectResult(BaseModel):
    model: str
    detections: list[Detection] = Field(default_factory=list)
    width: int
    height: int
    load_ns: int = 0
    total_ns: int = 0
