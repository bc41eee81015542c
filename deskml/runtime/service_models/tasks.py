"""Embeddings, rerank and vision tasks on service models, with dynamic batching.

Routers call these with core types; this is where a model name becomes a loaded engine (via the
`ServiceManager`), where per-request work (decoding, resizing) runs in worker threads in parallel,
and where the forward passes of concurrent requests to one model are merged by a `MicroBatcher`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from deskml.core.context import current_record
from deskml.core.errors import BadRequest, ModelNotFound
from deskml.core.rerank import RerankHit, RerankRequest, RerankResult
from deskml.core.types import EmbedRequest, EmbedResult, Timings
from deskml.core.vision import ClassifyResult, DetectResult, OcrResult, Prediction
from deskml.engines.spec import ServiceSpec
from deskml.runtime.service_models.batching import MicroBatcher
from deskml.runtime.service_models.manager import ServiceManager

MAX_TOP_K = 1000
MAX_TEXT_INPUTS = 2048
TEXT_KIND: Final = "text-classify"  # the kinds of the heads classifier jobs train
IMAGE_KIND: Final = "classify"


def _renormalize(vector: list[float]) -> list[float]:
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector] if norm else vector


def _note(model: str, backend: str) -> None:
    record = current_record()
    if record is not None:
        record.model, record.backend = model, backend


class ServiceTasks:
    def __init__(self, services: ServiceManager, *, batch_size: int = 8, batch_wait: float = 0.005) -> None:
        self.services = services
        self.batch_size = max(1, batch_size)
        self.batch_wait = max(0.0, batch_wait)
        self._batchers: dict[str, tuple[Any, MicroBatcher[Any, Any]]] = {}

    async def close(self) -> None:
        for _, batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()

    def batcher(
        self, spec: ServiceSpec, engine: Any, run: Callable[[list[Any]], Any], key: str | None = None
    ) -> MicroBatcher[Any, Any]:
        """The batcher of the engine now loaded for `spec` (a reload gets a fresh one); `key` names a
        second batcher on the same engine (e.g. image features beside class probabilities)."""
        key = key or spec.name
        current = self._batchers.get(key)
        if current is not None and current[0] is engine:
            return current[1]

        async def run_batch(items: list[Any]) -> list[Any]:
            return await self.services.run(spec, run, items)

        batcher: MicroBatcher[Any, Any] = MicroBatcher(run_batch, max_size=self.batch_size, max_wait=self.batch_wait)
        self._batchers[key] = (engine, batcher)
        return batcher

    # embeddings ----------------------------------------------------------------------------
    def serves_embedding(self, model: str | None) -> bool:
        return bool(model) and self.services.find(model or "", "embedding") is not None

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        started = time.perf_counter_ns()
        spec = self.services.get_spec(request.model, "embedding")
        engine, load_ns = await self.services.engine(spec, request.keep_alive)
        _note(spec.name, spec.kind)
        if not request.inputs:  # Ollama's way to load a model: an empty input
            return EmbedResult(model=spec.name, embeddings=[], timings=Timings(load_ns=load_ns, total_ns=load_ns))
        if not request.truncate and hasattr(engine, "check_lengths"):
            await self.services.run(spec, engine.check_lengths, list(request.inputs))

        def run(batch: list[list[str]]) -> list[tuple[list[list[float]], list[int]]]:
            flat = [text for texts in batch for text in texts]
            vectors, counts = engine.embed(flat)
            out, at = [], 0
            for texts in batch:
                out.append((vectors[at : at + len(texts)], counts[at : at + len(texts)]))
                at += len(texts)
            return out

        vectors, counts = await self.batcher(spec, engine, run).submit(list(request.inputs))
        if request.dimensions:
            if request.dimensions < 1:
                raise BadRequest("dimensions must be positive", param="dimensions")
            vectors = [_renormalize(v[: request.dimensions]) for v in vectors]
        tokens = sum(counts)
        timings = Timings(load_ns=load_ns, prompt_eval_count=tokens, total_ns=time.perf_counter_ns() - started)
        return EmbedResult(model=spec.name, embeddings=vectors, prompt_tokens=tokens, timings=timings)

    async def rerank(self, request: RerankRequest) -> RerankResult:
        started = time.perf_counter_ns()
        if not request.query.strip():
            raise BadRequest("query must not be empty", param="query")
        if not request.documents:
            raise BadRequest("documents must not be empty", param="documents")
        if request.top_n is not None and request.top_n < 1:
            raise BadRequest("top_n must be at least 1", param="top_n")
        spec = self.services.get_spec(request.model, "embedding")
        result = await self.embed(EmbedRequest(model=spec.name, inputs=[request.query, *request.documents]))
        query, docs = result.embeddings[0], result.embeddings[1:]
        scores = [sum(q * d for q, d in zip(query, doc, strict=True)) for doc in docs]
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: request.top_n or len(docs)]
        return RerankResult(
            model=spec.name, hits=[RerankHit(index=i, score=round(scores[i], 6)) for i in order],
            prompt_tokens=result.prompt_tokens, load_ns=result.timings.load_ns,
            total_ns=time.perf_counter_ns() - started,
        )

    # vision ----------------------------------------------------------------------------------
    async def classify(self, model: str | None, image: bytes, top_k: int = 5) -> ClassifyResult:
        started = time.perf_counter_ns()
        if not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        spec = self.services.get_spec(model, "classify")
        if spec.options.get("backbone"):  # a head trained by an image-classifier job
            return await self._classify_with_head(spec, image, top_k, started)
        engine, load_ns = await self.services.engine(spec)
        _note(spec.name, spec.kind)
        batcher = self.batcher(spec, engine, engine.forward)
        with batcher.incoming():  # decoding in a worker thread; a forming batch waits for it
            pixels = await self.services.run(spec, engine.preprocess, image)
            pending = batcher.enqueue(pixels)
        probs = await pending
        predictions = [Prediction(index=i, label=label, score=score) for i, label, score in engine.top(probs, top_k)]
        return ClassifyResult(
            model=spec.name, predictions=predictions, load_ns=load_ns, total_ns=time.perf_counter_ns() - started
        )

    # trained heads (classifier jobs: deskml/runtime/jobs/serving.py) -------------------------
    async def classify_text(self, model: str, inputs: list[str], top_k: int | None = None
                                ) -> tuple[str, list[list[Prediction]], int]:
        """Labels with scores for each input text; returns (model, predictions per input, total ns)."""
        started = time.perf_counter_ns()
        if not inputs:
            raise BadRequest("input must not be empty", param="input")
        if len(inputs) > MAX_TEXT_INPUTS:
            raise BadRequest(f"at most {MAX_TEXT_INPUTS} inputs per request", param="input")
        if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
        spec = self.services.find(model, TEXT_KIND)
        if spec is None:
            raise ModelNotFound(model)
        head, _ = await self.services.engine(self.services.get_spec(spec.name, TEXT_KIND))
        embedded = await self.embed(EmbedRequest(model=spec.options["base"], inputs=inputs))
        import numpy as np  # an optional extra's dependency: imported when a trained model is used

        probs = head.predict(np.asarray(embedded.embeddings, dtype=np.float32))
        _note(spec.name, "linear-head")
        k = top_k or len(head.labels)
        out = [[Prediction(index=i, label=label, score=score) for i, label, score in head.top(row, k)] for row in probs]
        return spec.name, out, time.perf_counter_ns() - started


    async def image_features(self, backbone: str, images: list[bytes], names: list[str] | None = None) -> Any:
        """The frozen backbone's pooled features of each picture, through the backbone's own batcher;
        a picture that cannot be decoded is a BadRequest naming it (from `names`)."""
        spec = self.services.get_spec(backbone, "classify")
        engine, _ = await self.services.engine(spec)
        batcher = self.batcher(spec, engine, engine.features, key=f"{spec.name}#features")

        async def one(index: int, data: bytes) -> Any:
            with batcher.incoming():
                try:
                    pixels = await self.services.run(spec, engine.preprocess, data)
                except BadRequest as exc:
                    name = names[index] if names else f"picture #{index + 1}"
                    raise BadRequest(f"{name}: {exc.message}") from None
                pending = batcher.enqueue(pixels)
            return await pending

        import numpy as np  # an optional extra's dependency: imported when a trained model is used

        return np.stack(await asyncio.gather(*(one(i, image) for i, image in enumerate(images))))


    async def _classify_with_head(self, spec: ServiceSpec, image: bytes, top_k: int, started: int) -> ClassifyResult:
        """`/api/vision/classify` for a trained image head: backbone features, then the head."""
        head, load_ns = await self.services.engine(spec)
        features = await self.image_features(spec.options["backbone"], [image])
        probs = head.predict(features)[0]
        _note(spec.name, "linear-head")
        predictions = [Prediction(index=i, label=label, score=score) for i, label, score in head.top(probs, top_k)]
        return ClassifyResult(model=spec.name, predictions=predictions, load_ns=load_ns,
                              total_ns=time.perf_counter_ns() - started)

    async def ocr(self, model: str | None, image: bytes) -> OcrResult:
        started = time.perf_counter_ns()
        spec = self.services.get_spec(model, "ocr")
        engine, load_ns = await self.services.engine(spec)
        _note(spec.name, spec.kind)
        lines, width, height = await self.services.run(spec, engine.read, image)
        return OcrResult(
            model=spec.name, lines=lines, width=width, height=height, load_ns=load_ns,
            total_ns=time.perf_counter_ns() - started,
        )

    async def detect(self, model: str | None, image: bytes, threshold: float | None = None) -> DetectResult:
        started = time.perf_counter_ns()
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise BadRequest("threshold must be between 0 and 1", param="threshold")
        spec = self.services.get_spec(model, "detect")
        engine, load_ns = await self.services.engine(spec)
        _note(spec.name, spec.kind)
        args: tuple[Any, ...] = (image,) if threshold is None else (image, threshold)
        detections, width, height = await self.services.run(spec, engine.detect, *args)
        return DetectResult(
            model=spec.name, detections=detections, width=width, height=height, load_ns=load_ns,
            total_ns=time.perf_counter_ns() - started,
        )
