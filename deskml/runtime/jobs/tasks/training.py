"""What the two classifier jobs share: the holdout split, the linear model, its evaluation.

The model is scikit-learn's LogisticRegression on frozen features (L2-regularised, lbfgs), which
gives calibrated-enough scores and trains in well under a second on thousands of examples; the
features are where the time goes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from deskml.runtime.jobs.task_context import JobFailed


@dataclass
class TrainConfig:
    test_size: float = 0.2
    c: float = 1.0
    max_iter: int = 1000
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        return cls(test_size=float(params.get("test_size", 0.2)), c=float(params.get("C", 1.0)),
                   max_iter=int(params.get("max_iter", 1000)), seed=int(params.get("seed", 0)))


def split(labels: list[str], config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices; every class keeps at least one example on each side."""
    from sklearn.model_selection import train_test_split

    classes = sorted(set(labels))
    n = len(labels)
    test_n = max(len(classes), round(n * config.test_size))
    if n - test_n < len(classes):
        raise JobFailed(f"{n} examples are too few to hold out {test_n} for testing and still train on every "
                        f"one of the {len(classes)} classes")
    indices = np.arange(n)
    train, test = train_test_split(indices, test_size=test_n, stratify=labels, random_state=config.seed)
    return np.sort(train), np.sort(test)


def fit_and_evaluate(features: np.ndarray, labels: list[str], train: np.ndarray, test: np.ndarray,
                     config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """Fit on the train rows, score on the test rows; (model, metrics with a confusion matrix)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    y = np.asarray(labels)
    started = time.perf_counter()
    model = LogisticRegression(C=config.c, max_iter=config.max_iter)
    model.fit(features[train], y[train])
    fit_s = time.perf_counter() - started
    predicted = model.predict(features[test])
    classes = [str(c) for c in model.classes_]
    report = classification_report(y[test], predicted, labels=classes, output_dict=True, zero_division=0)
    metrics = {
        "accuracy": round(float(accuracy_score(y[test], predicted)), 4),
        "train_size": len(train),
        "test_size": len(test),
        "classes": classes,
        "confusion_matrix": {
            "labels": classes,  # rows: true label, columns: predicted label
            "matrix": confusion_matrix(y[test], predicted, labels=classes).tolist(),
        },
        "per_class": {c: {k: round(float(v), 4) for k, v in report[c].items()} for c in classes},
        "fit_seconds": round(fit_s, 3),
    }
    return model, metrics
