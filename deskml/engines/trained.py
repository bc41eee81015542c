"""Linear heads trained by deskml's classifier jobs, served over frozen features.

A head is an `.npz` file (no pickle: arrays and label strings only) with `coef` (classes x dims, or
1 x dims for two classes), `intercept` and `labels`: scikit-learn's LogisticRegression weights.
Probabilities are computed the way `predict_proba` does: a sigmoid for two classes, a softmax above.
The features come from the frozen model the head was trained on (`all-minilm` embeddings for text,
EfficientNet-Lite0's pooled features for images); the runtime supplies them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from deskml.core.errors import BadRequest, ModelLoadError


def head_bytes(coef: np.ndarray, intercept: np.ndarray, labels: list[str]) -> bytes:
    """The artifact a training job stores: the same format `LinearHead` loads."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, coef=np.asarray(coef, dtype=np.float32),
                        intercept=np.asarray(intercept, dtype=np.float32), labels=np.asarray(labels, dtype=str))
    return buffer.getvalue()


def probabilities(coef: np.ndarray, intercept: np.ndarray, features: np.ndarray) -> np.ndarray:
    scores = features @ coef.T + intercept
    if coef.shape[0] == 1:  # binary: scikit-learn keeps one row, for the second class
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class LinearHead:
    """Engine for trained specs (kind `text-classify`, or `classify` with a `backbone` option)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.path = Path(spec.options["path"])
        self.coef = np.zeros((0, 0), dtype=np.float32)
        self.intercept = np.zeros(0, dtype=np.float32)
        self.labels: list[str] = []

    @property
    def dimensions(self) -> int:
        return int(self.coef.shape[1])

    def load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self.coef, self.intercept = data["coef"], data["intercept"]
                self.labels = [str(label) for label in data["labels"]]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"could not read the trained head {self.path.name}: {exc}") from exc
        classes = 2 if self.coef.shape[0] == 1 else self.coef.shape[0]
        if classes != len(self.labels):
            raise ModelLoadError(
                f"the trained head {self.path.name} has {classes} outputs for {len(self.labels)} labels"
            )

    def close(self) -> None:
        self.coef = np.zeros((0, 0), dtype=np.float32)

    def predict(self, features: list[np.ndarray] | np.ndarray) -> np.ndarray:
        matrix = np.asarray(features, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimensions:
            raise BadRequest(f"model '{self.spec.name}' expects {self.dimensions}-dim features from "
                             f"{self.spec.options.get('base')}, got shape {matrix.shape}")
        return probabilities(self.coef, self.intercept, matrix)

    def top(self, probs: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        k = max(1, min(k, len(probs)))
        order = np.argsort(-probs)[:k]
        return [(int(i), self.labels[int(i)], float(probs[int(i)])) for i in order]
