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
from pathlib import Path

from deskml.core.errors import BadRequest, Conflict
from deskml.engines.spec import ServiceSpec
from deskml.runtime import names
from deskml.runtime.jobs.store import JobStore, TrainedInfo
from deskml.runtime.service_models.manager import ServiceManager
from deskml.runtime.service_models.tasks import IMAGE_KIND, TEXT_KIND

log = logging.getLogger("deskml.jobs")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


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


def is_trained(spec: ServiceSpec) -> bool:
    return bool(spec.options.get("trained"))


def display(name: str) -> str:
    return names.display(name)
