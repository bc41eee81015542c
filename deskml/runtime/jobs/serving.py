"""Serving what classifier jobs trained: trained heads become service models of this process.

The heads live in the database (`trained_models`), so whichever process trained one (the server
itself or a Celery worker elsewhere), every deskml node serves it: `TrainedModels.refresh` writes
each head to `<data_dir>/trained/` and adds a `ServiceSpec` for it, which makes it appear in
`/api/tags` and `/v1/models` and routes it through the same loading, keep-alive and batching as the
bundled models. Text heads answer `POST /api/classify`; image heads answer `/api/vision/classify`
(their spec is a `classify` spec with a `backbone`, the frozen model whose features they read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import numpy as np

from deskml.core.context import current_record
from deskml.core.errors import BadRequest, Conflict, ModelNotFound
from deskml.core.types import EmbedRequest
from deskml.core.vision import ClassifyResult, Prediction
from deskml.engines.spec import ServiceSpec
from deskml.runtime import names
from deskml.runtime.jobs.store import JobStore, TrainedInfo
from deskml.runtime.service_tasks import MAX_TOP_K, ServiceTasks
from deskml.runtime.services import ServiceManager

log = logging.getLogger("deskml.jobs")

TEXT_KIND: Final = "text-classify"
IMAGE_KIND: Final = "classify"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_TEXT_INPUTS = 2048


def check_model_name(name: str, services: ServiceManager, trained: set[str]) -> str:
    """A trained model's name: short, lowercase, and not the name of a bundled model."""
    clean = name.strip().lower()
    if clean.endswith(":latest"):
        clean = clean[: -len(":latest")]
    if not _NAME.match(clean):
        raise BadRequest("config.name must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a "
                         "letter or digit", param="name")
    existing = services.find(clean)
    if existing is not None and existing.name not in trained:
        raise Conflict(f"'{clean}' is the name of a bundled model ({existing.name}); pick another name")
    return clean


def trained_spec(info: TrainedInfo, path: Path) -> ServiceSpec:
    metrics = info.metrics or {}
    accuracy = metrics.get("accuracy")
    about = f"trained by job {info.job_id} on {info.base}" + (f", holdout accuracy {accuracy:.3f}"
                                                              if isinstance(accuracy, float) else "")
    if info.kind == TEXT_KIND:
        return ServiceSpec(
            name=info.name, kind=TEXT_KIND, engine="deskml.engines.trained:LinearHead", extra="embed",
            requires=["numpy"], options={"path": str(path), "base": info.base, "format": "npz", "trained": True,
                                         "labels": info.labels},
            capabilities=["classification"], family="linear-head", description=f"text classifier {about}",
            present=lambda spec: Path(spec.options["path"]).is_file(),
        )
    return ServiceSpec(
        name=info.name, kind=IMAGE_KIND, engine="deskml.engines.trained:LinearHead", extra="vision",
        requires=["numpy"], options={"path": str(path), "base": info.base, "backbone": info.base, "format": "npz",
                                     "trained": True, "labels": info.labels},
        capabilities=["vision", "classification"], family="linear-head", description=f"image classifier {about}",
        present=lambda spec: Path(spec.options["path"]).is_file(),
    )


class TrainedModels:
    def __init__(self, store: JobStore, services: ServiceManager, folder: Path) -> None:
        self.store = store
        self.services = services
        self.folder = folder
        self.known: dict[str, str] = {}  # name -> sha256 of the head now registered
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def names(self) -> set[str]:
        return set(self.known)

    def start(self, every: float) -> None:
        """Pick up heads trained by other processes (Celery workers) every `every` seconds."""
        self._task = asyncio.create_task(self._refresh_forever(every), name="deskml-trained-models")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be briefly away; try again next round
                log.warning("could not refresh trained models: %s", exc)

    async def refresh(self) -> None:
        async with self._lock:
            infos = {info.name: info for info in await asyncio.to_thread(self.store.models)}
            for name in [n for n in self.known if n not in infos]:
                await self._drop(name)
            for name, info in infos.items():
                if self.known.get(name) != info.sha256:
                    await self._add(info)

    async def _add(self, info: TrainedInfo) -> None:
        artifact = await asyncio.to_thread(self.store.model_artifact, info.name)
        if artifact is None:
            return
        path = self.folder / f"{info.name}-{info.sha256[:12]}.npz"

        def write() -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not path.is_file():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(artifact)
                tmp.replace(path)

        await asyncio.to_thread(write)
        if info.name in self.known:
            await self._drop(info.name)
        self.services.specs.append(trained_spec(info, path))
        self.known[info.name] = info.sha256
        log.info("serving trained %s model %s", info.kind, info.name)

    async def _drop(self, name: str) -> None:
        self.services.specs[:] = [s for s in self.services.specs if not (s.name == name and s.options.get("trained"))]
        self.known.pop(name, None)
        await self.services.unload(name)


def _note(model: str, backend: str) -> None:
    record = current_record()
    if record is not None:
        record.model, record.backend = model, backend


async def classify_text(tasks: ServiceTasks, model: str, inputs: list[str], top_k: int | None = None
                        ) -> tuple[str, list[list[Prediction]], int]:
    """Labels with scores for each input text; returns (model, predictions per input, total ns)."""
    started = time.perf_counter_ns()
    if not inputs:
        raise BadRequest("input must not be empty", param="input")
    if len(inputs) > MAX_TEXT_INPUTS:
        raise BadRequest(f"at most {MAX_TEXT_INPUTS} inputs per request", param="input")
    if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest(f"top_k must be between 1 and {MAX_TOP_K}", param="top_k")
    spec = tasks.services.find(model, TEXT_KIND)
    if spec is None:
        raise ModelNotFound(model)
    head, _ = await tasks.services.engine(tasks.services.get_spec(spec.name, TEXT_KIND))
    embedded = await tasks.embed(EmbedRequest(model=spec.options["base"], inputs=inputs))
    import numpy as np  # an optional extra's dependency: imported when a trained model is used

    probs = head.predict(np.asarray(embedded.embeddings, dtype=np.float32))
    _note(spec.name, "linear-head")
    k = top_k or len(head.labels)
    out = [[Prediction(index=i, label=label, score=score) for i, label, score in head.top(row, k)] for row in probs]
    return spec.name, out, time.perf_counter_ns() - started


async def image_features(tasks: ServiceTasks, backbone: str, images: list[bytes],
                         names: list[str] | None = None) -> np.ndarray:
    """The frozen backbone's pooled features of each picture, through the backbone's own batcher;
    a picture that cannot be decoded is a BadRequest naming it (from `names`)."""
    spec = tasks.services.get_spec(backbone, "classify")
    engine, _ = await tasks.services.engine(spec)
    batcher = tasks.batcher(spec, engine, engine.features, key=f"{spec.name}#features")

    async def one(index: int, data: bytes) -> Any:
        with batcher.incoming():
            try:
                pixels = await tasks.services.run(spec, engine.preprocess, data)
            except BadRequest as exc:
                name = names[index] if names else f"picture #{index + 1}"
                raise BadRequest(f"{name}: {exc.message}") from None
            pending = batcher.enqueue(pixels)
        return await pending

    import numpy as np  # an optional extra's dependency: imported when a trained model is used

    return np.stack(await asyncio.gather(*(one(i, image) for i, image in enumerate(images))))


async def classify_with_head(tasks: ServiceTasks, spec: ServiceSpec, image: bytes, top_k: int,
                             started: int) -> ClassifyResult:
    """`/api/vision/classify` for a trained image head: backbone features, then the head."""
    head, load_ns = await tasks.services.engine(spec)
    features = await image_features(tasks, spec.options["backbone"], [image])
    probs = head.predict(features)[0]
    _note(spec.name, "linear-head")
    predictions = [Prediction(index=i, label=label, score=score) for i, label, score in head.top(probs, top_k)]
    return ClassifyResult(model=spec.name, predictions=predictions, load_ns=load_ns,
                          total_ns=time.perf_counter_ns() - started)


def is_trained(spec: ServiceSpec) -> bool:
    return bool(spec.options.get("trained"))


def display(name: str) -> str:
    return names.display(name)
