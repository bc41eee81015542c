"""Train a text classifier: frozen sentence embeddings + a linear head, served as a model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from deskml.core.types import EmbedRequest
from deskml.engines.trained import head_bytes
from deskml.runtime.jobs.datasets import parse_text_dataset
from deskml.runtime.jobs.task_context import JobContext
from deskml.runtime.jobs.tasks.training import TrainConfig, fit_and_evaluate, split
from deskml.runtime.service_models.tasks import TEXT_KIND

EMBED_CHUNK = 32  # texts per embedding call: progress moves often, live requests interleave


async def train_text_classifier(ctx: JobContext) -> dict[str, Any]:
    params = ctx.job.params
    started = time.perf_counter()
    await ctx.progress(0, 1, "reading the dataset", force=True)
    data = await asyncio.to_thread(ctx.store.read_file, params["dataset"])
    dataset = await asyncio.to_thread(parse_text_dataset, data)
    config = TrainConfig.from_params(params)
    train, test = split(dataset.labels, config)
    total = len(dataset.texts) + 1  # every embedded text, then the fit
    embedding = params.get("embedding", "all-minilm")
    vectors: list[list[float]] = []
    # The first chunk loads the embedding model (seconds): say so rather than still "reading the dataset".
    await ctx.progress(0, total, f"loading the embedding model {embedding}", force=True)
    for start in range(0, len(dataset.texts), EMBED_CHUNK):
        chunk = dataset.texts[start : start + EMBED_CHUNK]
        result = await ctx.runtime.service_tasks.embed(EmbedRequest(model=embedding, inputs=chunk))
        vectors.extend(result.embeddings)
        await ctx.progress(len(vectors), total, f"embedded {len(vectors)}/{len(dataset.texts)} texts")
    embed_s = time.perf_counter() - started
    features = np.asarray(vectors, dtype=np.float32)
    await ctx.progress(len(vectors), total, "fitting the classifier", force=True)
    model, metrics = await asyncio.to_thread(fit_and_evaluate, features, dataset.labels, train, test, config)
    artifact = head_bytes(model.coef_, model.intercept_, metrics["classes"])
    metrics.update(embedding=embedding, embed_seconds=round(embed_s, 3),
                   total_seconds=round(time.perf_counter() - started, 3), dataset=dataset.summary())
    info = await asyncio.to_thread(ctx.store.save_model, params["name"], TEXT_KIND, embedding, metrics["classes"],
                                   metrics, artifact, ctx.job.id, ctx.job.owner)
    await ctx.saved_model(info)
    return {"model": info.name, "kind": TEXT_KIND, **metrics}
