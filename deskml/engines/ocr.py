"""Text recognition with RapidOCR (PP-OCRv4 detection + recognition, ONNX, bundled in its package).

`rapidocr-onnxruntime` declares `opencv-python`, the GUI build of OpenCV that needs libGL on a
server; deskml installs it with `--no-deps` next to `opencv-python-headless` (see the Makefile's
VISION_MODEL_PACKAGES), which provides the same `cv2` module.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from deskml.core.vision import OcrLine
from deskml.engines.image_input import decode_rgb
from deskml.engines.vision import cpu_threads


class RapidOcrEngine:
    """Engine for `kind="ocr"`: image bytes -> lines of text with boxes and confidences."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._ocr: Any = None
        # RapidOCR keeps per-call state on the object (thresholds, letterbox records): one call at a time.
        self._lock = threading.Lock()

    def load(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        threads = cpu_threads()
        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def close(self) -> None:
        self._ocr = None

    def read(self, data: bytes) -> tuple[list[OcrLine], int, int]:
        image = decode_rgb(data, "image")
        bgr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[:, :, ::-1])
        with self._lock:
            found, _elapsed = self._ocr(bgr)
        lines: list[OcrLine] = []
        for polygon, text, score in found or []:
            points = [[float(x), float(y)] for x, y in polygon]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            lines.append(OcrLine(
                text=str(text), confidence=round(float(score), 4),
                box=[min(xs), min(ys), max(xs), max(ys)], polygon=points,
            ))
        # Reading order: top to bottom, then left to right within a line's height.
        lines.sort(key=lambda line: (round(line.box[1] / max(1.0, (line.box[3] - line.box[1]) * 0.6)), line.box[0]))
        return lines, image.width, image.height
