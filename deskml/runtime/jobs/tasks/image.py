"""Train an image classifier: frozen EfficientNet-Lite0 features + a linear head, served as a model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from deskml.core.errors import BadRequest
from deskml.engines.trained import head_bytes
from deskml.runtime.jobs.datasets import iter_images
from deskml.runtime.jobs.task_context import JobContext, JobFailed
from deskml.runtime.jobs.tasks.training import TrainConfig, fit_and_evaluate, split
from deskml.runtime.service_models.tasks import IMAGE_KIND

FEATURE_CHUNK = 8  # pictures decoded and run per step (one micro-batch of the backbone)


def _pictures(data: bytes, max_files: int, max_bytes: int) -> list[tuple[str, str, bytes]]:
    return list(iter_images(data, max_files, max_bytes))


async def train_image_classifier(ctx: JobContext) -> dict[str, Any]:
    params = ctx.job.params
    settings = ctx.settings
    started = time.perf_counter()
    await ctx.progress(0, 1, "reading the dataset", force=True)
    data = await asyncio.to_thread(ctx.store.read_file, params["dataset"])
    max_bytes = int(settings.dataset_max_unpacked_mb * (1 << 20))
    pictures = await asyncio.to_thread(_pictures, data, settings.dataset_max_files, max_bytes)
    del data
    labels = [label for label, _, _ in pictures]
    config = TrainConfig.from_params(params)
    train, test = split(labels, config)
    backbone = params.get("backbone", "efficientnet-lite0")
    total = len(pictures) + 1
    rows: list[np.ndarray] = []
    # The first chunk loads the backbone (seconds): say so rather than still "reading the dataset".
    await ctx.progress(0, total, f"loading the backbone model {backbone}", force=True)
    for start in range(0, len(pictures), FEATURE_CHUNK):
        chunk = pictures[start : start + FEATURE_CHUNK]
        try:
            rows.append(await ctx.runtime.service_tasks.image_features(backbone, [image for _, _, image in chunk],
                                             [name for _, name, _ in chunk]))
        except BadRequest as exc:
            raise JobFailed(f"a picture could not be used: {exc.message}") from None
        done = start + len(chunk)
        await ctx.progress(done, total, f"features of {done}/{len(pictures)} pictures")
    features_s = time.perf_counter() - started
    features = np.concatenate(rows).astype(np.float32)
    await ctx.progress(len(pictures), total, "fitting the classifier", force=True)
    model, metrics = await asyncio.to_thread(fit_and_evaluate, features, labels, train, test, config)
    artifact = head_bytes(model.coef_, model.intercept_, metrics["classes"])
    counts = {c: labels.count(c) for c in metrics["classes"]}
    metrics.update(backbone=backbone, features_seconds=round(features_s, 3),
                   total_seconds=round(time.perf_counter() - started, 3),
                   dataset={"images": len(labels), "classes": metrics["classes"], "per_class": counts, "format": "zip"},
                   chance_accuracy=round(max(counts.values()) / len(labels), 4))
    info = await asyncio.to_thread(ctx.store.save_model, params["name"], IMAGE_KIND, backbone, metrics["classes"],
                                   metrics, artifact, ctx.job.id, ctx.job.owner)
    await ctx.saved_model(info)
    return {"model": info.name, "kind": IMAGE_KIND, **metrics}
