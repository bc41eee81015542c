"""What the routes call: upload and check files, submit jobs, read, list, cancel and watch them.

Whoever submits a job owns it (the principal's id); callers with the admin scope see and cancel
every job and file, others only their own, and anything else is reported as not found (so ids of
other people's jobs reveal nothing). Datasets are checked before a job is queued: a malformed one
is a 400 at upload (or at `/api/train` for a path), not a job that fails later.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import importlib.util
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Protocol

from deskml.core.errors import BadRequest, DeskmlError, NotFound, NotImplementedFeature, PayloadTooLarge
from deskml.core.principal import SCOPE_ADMIN, Principal
from deskml.runtime.jobs import datasets
from deskml.runtime.jobs.serving import TrainedModels, check_model_name
from deskml.runtime.jobs.store import FileInfo, JobInfo, JobStore, TrainedInfo
from deskml.runtime.jobs.tables import SUCCESS
from deskml.settings import Settings

log = logging.getLogger("deskml.jobs")

TRAIN_KINDS = {"text": "train-text-classifier", "image": "train-image-classifier"}
DATASET_PURPOSES = {"train", "fine-tune"}
FILE_PURPOSES = DATASET_PURPOSES | {"batch"}
EMBEDDINGS = ("all-minilm", "wordllama")
BACKBONES = ("efficientnet-lite0",)
COMPLETION_WINDOWS = ("24h",)


class Executor(Protocol):
    name: str

    async def submit(self, job: JobInfo) -> None: ...

    async def cancelled(self, job_id: str) -> None: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


def _can_see(principal: Principal, owner: str) -> bool:
    return principal.allows(SCOPE_ADMIN) or principal.id == owner


def _number(config: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"config.{name} must be a number", param=name)
    if not low <= value <= high:
        raise BadRequest(f"config.{name} must be between {low:g} and {high:g}", param=name)
    return float(value)


class JobService:
    def __init__(self, settings: Settings, store: JobStore, executor: Executor, services: Any,
                 trained: TrainedModels) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.services = services
        self.trained = trained

    # files -------------------------------------------------------------------------------------
    def check_file(self, purpose: str, data: bytes) -> tuple[str, dict[str, Any]]:
        """(format, summary) of an upload, or a BadRequest saying what is wrong with it."""
        if purpose not in FILE_PURPOSES:
            raise BadRequest(f"purpose must be one of {', '.join(sorted(FILE_PURPOSES))}", param="purpose")
        if purpose == "batch":
            lines = datasets.parse_batch_file(data)
            return "jsonl", {"lines": len(lines), "endpoints": sorted({line.url for line in lines})}
        if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
            image_set = datasets.parse_image_dataset(data, self.settings.dataset_max_files, self._max_unpacked)
            return "zip", image_set.summary()
        text_set = datasets.parse_text_dataset(data)
        return text_set.format, text_set.summary()

    @property
    def _max_unpacked(self) -> int:
        return int(self.settings.dataset_max_unpacked_mb * (1 << 20))

    async def upload(self, principal: Principal, purpose: str, filename: str, data: bytes) -> FileInfo:
        fmt, summary = await asyncio.to_thread(self.check_file, purpose, data)
        return await asyncio.to_thread(self.store.save_file, principal.id, purpose, filename, fmt, data, summary)

    async def file(self, principal: Principal, file_id: str) -> FileInfo:
        info = await asyncio.to_thread(self.store.file, file_id)
        if info is None or not _can_see(principal, info.owner):
            raise NotFound(f"no file with id '{file_id}'", param="file_id")
        return info

    async def files(self, principal: Principal, purpose: str | None = None, limit: int = 100) -> list[FileInfo]:
        owner = None if principal.allows(SCOPE_ADMIN) else principal.id
        return await asyncio.to_thread(self.store.files, owner, purpose, limit)

    async def file_content(self, principal: Principal, file_id: str) -> bytes:
        await self.file(principal, file_id)
        return await asyncio.to_thread(self.store.read_file, file_id)

    async def delete_file(self, principal: Principal, file_id: str) -> None:
        await self.file(principal, file_id)
        await asyncio.to_thread(self.store.delete_file, file_id)

    # training ----------------------------------------------------------------------------------
    async def _dataset(self, principal: Principal, dataset: str) -> FileInfo:
        """An uploaded file id, or a path inside DESKML_DATASETS_DIR (copied into the database so
        that any worker can read it)."""
        if dataset.startswith("file-"):
            info = await self.file(principal, dataset)
            if info.purpose not in DATASET_PURPOSES:
                raise BadRequest(f"file {dataset} was uploaded for '{info.purpose}', not as a training dataset",
                                 param="dataset")
            return info
        root = self.settings.datasets_path.resolve()
        candidate = Path(dataset)
        path = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if not path.is_relative_to(root):
            raise BadRequest(f"dataset must be an uploaded file id or a path inside the datasets folder {root}",
                             param="dataset")
        if not path.is_file():
            raise NotFound(f"no dataset '{dataset}' in the datasets folder", param="dataset")
        limit = int(self.settings.max_upload_mb * (1 << 20))
        if path.stat().st_size > limit:
            raise PayloadTooLarge(f"the dataset is larger than the {self.settings.max_upload_mb:g} MB limit")
        data = await asyncio.to_thread(path.read_bytes)
        return await self.upload(principal, "train", path.name, data)

    async def train(self, principal: Principal, dataset: str, config: dict[str, Any]) -> JobInfo:
        if not isinstance(dataset, str) or not dataset.strip():
            raise BadRequest("dataset is required: an uploaded file id (file-...) or a path in the datasets folder",
                             param="dataset")
        if importlib.util.find_spec("sklearn") is None:
            raise NotImplementedFeature("training a classifier needs scikit-learn: pip install 'deskml[jobs]'")
        info = await self._dataset(principal, dataset.strip())
        kind = str(config.get("kind") or config.get("type") or ("image" if info.format == "zip" else "text"))
        kind = kind.removesuffix("-classifier").removesuffix("_classifier")
        if kind not in TRAIN_KINDS:
            raise BadRequest("config.kind must be 'text' or 'image'", param="kind")
        if (kind == "image") != (info.format == "zip"):
            expected = "a zip of label folders" if kind == "image" else "a CSV or JSONL file"
            raise BadRequest(f"a {kind} classifier trains on {expected}; {info.id} is {info.format}", param="dataset")
        params: dict[str, Any] = {
            "dataset": info.id,
            "test_size": _number(config, "test_size", 0.2, 0.05, 0.5),
            "C": _number(config, "C", 1.0, 1e-6, 1e6),
            "max_iter": int(_number(config, "max_iter", 1000, 10, 100_000)),
            "seed": int(_number(config, "seed", 0, 0, 2**31 - 1)),
        }
        if kind == "text":
            params["embedding"] = str(config.get("embedding", "all-minilm"))
            if params["embedding"] not in EMBEDDINGS:
                raise BadRequest(f"config.embedding must be one of {', '.join(EMBEDDINGS)}", param="embedding")
            self.services.get_spec(params["embedding"], "embedding")  # 501 with the pip command when missing
        else:
            params["backbone"] = str(config.get("backbone", BACKBONES[0]))
            if params["backbone"] not in BACKBONES:
                raise BadRequest(f"config.backbone must be one of {', '.join(BACKBONES)}", param="backbone")
            self.services.get_spec(params["backbone"], "classify")
        name = str(config.get("name") or config.get("model") or f"{kind}-classifier-{info.id[5:13]}")
        params["name"] = check_model_name(name, self.services, self.trained.names())
        return await self._submit(TRAIN_KINDS[kind], principal, params)

    # batches -----------------------------------------------------------------------------------
    async def batch(self, principal: Principal, input_file_id: str, endpoint: str, completion_window: str,
                    metadata: dict[str, str] | None) -> JobInfo:
        if endpoint not in datasets.BATCH_ENDPOINTS:
            raise BadRequest(f"endpoint must be one of {', '.join(datasets.BATCH_ENDPOINTS)}", param="endpoint")
        if completion_window not in COMPLETION_WINDOWS:
            raise BadRequest("completion_window must be 24h", param="completion_window")
        info = await self.file(principal, input_file_id)
        if info.purpose != "batch":
            raise BadRequest(f"file {input_file_id} was uploaded for '{info.purpose}', not 'batch'",
                             param="input_file_id")
        others = [url for url in info.meta.get("endpoints", []) if url != endpoint]
        if others:
            raise BadRequest(f"the input file has requests for {', '.join(others)}; every line's url must be the "
                             f"batch endpoint {endpoint}", param="input_file_id")
        params = {"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": completion_window,
                  "metadata": metadata or {}, "lines": info.meta.get("lines", 0)}
        return await self._submit("batch", principal, params)

    async def _submit(self, kind: str, principal: Principal, params: dict[str, Any]) -> JobInfo:
        job = await asyncio.to_thread(self.store.create, kind, principal.id, params, self.executor.name,
                                      self.settings.jobs_max_attempts)
        try:
            await self.executor.submit(job)
        except DeskmlError as exc:
            await asyncio.to_thread(self.store.cancel, job.id)
            raise exc
        log.info("job %s (%s) queued by %s on the %s executor", job.id, kind, principal.id, self.executor.name)
        return job

    # reading and cancelling -------------------------------------------------------------------
    async def get(self, principal: Principal, job_id: str) -> JobInfo:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or not _can_see(principal, job.owner):
            raise NotFound(f"no job with id '{job_id}'", param="job_id")
        if job.state == SUCCESS and job.kind in TRAIN_KINDS.values():
            name = (job.result or {}).get("model")
            if name and name not in self.trained.known:  # trained by a worker elsewhere: serve it now
                await self.trained.refresh()
        return job

    async def list(self, principal: Principal, *, state: str | None = None, kind: str | None = None,
                   limit: int = 50, mine: bool = False) -> list[JobInfo]:
        owner = principal.id if mine or not principal.allows(SCOPE_ADMIN) else None
        return await asyncio.to_thread(self.store.list, owner, state, kind, max(1, min(limit, 1000)))

    async def cancel(self, principal: Principal, job_id: str) -> JobInfo:
        await self.get(principal, job_id)
        job = await asyncio.to_thread(self.store.cancel, job_id)
        await self.executor.cancelled(job_id)
        latest = await asyncio.to_thread(self.store.get, job_id)
        if latest is not None:
            return latest
        if job is None:  # deleted between the check above and the cancel
            raise NotFound(f"no job with id '{job_id}'", param="job_id")
        return job

    async def watch(self, principal: Principal, job_id: str, every: float = 0.5,
                    limit_s: float = 24 * 3600) -> AsyncGenerator[JobInfo, None]:
        """The job now, then each time it changes, until it ends (and its runner has stopped)."""
        job = await self.get(principal, job_id)
        yield job
        deadline = time.monotonic() + limit_s
        last = (job.state, job.current, job.total, job.message, job.finished_at)
        while not (job.terminal and job.finished_at is not None) and time.monotonic() < deadline:
            await asyncio.sleep(every)
            latest = await asyncio.to_thread(self.store.get, job_id)
            if latest is None:
                return
            job = latest
            now = (job.state, job.current, job.total, job.message, job.finished_at)
            if now != last:
                last = now
                yield job

    async def models(self) -> builtins.list[TrainedInfo]:
        return await asyncio.to_thread(self.store.models)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.executor.close()
        await self.trained.close()
