"""What a job's task is given: the runtime it may use and its own job, plus the way to fail it.

Kept apart from `runner.py` so that the tasks (`tasks/*`) import this and the runner imports the
tasks, with no cycle between them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from deskml.runtime.jobs.store import JobInfo, JobStore, TrainedInfo
from deskml.settings import Settings

# An endpoint of a batch job: the request body -> the response body (raises DeskmlError for a
# request that fails; its status and message go to the batch's error file).
BatchHandler = Callable[[Any, dict[str, Any], int], Awaitable[dict[str, Any]]]


class JobFailed(Exception):
    """A task's own way to end with FAILURE and a message meant for the user."""


@dataclass
class JobRuntime:
    """What a task may use, the same in the server and in a Celery worker."""

    settings: Settings
    store: JobStore
    services: Any  # ServiceManager
    service_tasks: Any  # ServiceTasks
    inference: Any  # InferenceService
    batch_handlers: dict[str, BatchHandler] = field(default_factory=dict)
    trained: Any = None  # TrainedModels of this process, refreshed when a job saves a model


class JobContext:
    PROGRESS_EVERY = 0.5  # seconds between progress writes (the last one always goes)

    def __init__(self, runtime: JobRuntime, job: JobInfo, worker: str) -> None:
        self.runtime = runtime
        self.job = job
        self.worker = worker
        self.partial: dict[str, Any] | None = None  # what a cancelled task made, kept on the job
        self.stats: dict[str, Any] = {}
        self._last_write = 0.0
        self._lost = False

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> JobStore:
        return self.runtime.store

    async def progress(self, current: int, total: int, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.PROGRESS_EVERY and current < total:
            return
        self._last_write = now
        ours = await asyncio.to_thread(self.store.progress, self.job.id, self.worker, current, total, message,
                                       dict(self.stats) if self.stats else None)
        if not ours:  # cancelled (or taken over): stop here rather than at the next heartbeat
            self._lost = True
            raise asyncio.CancelledError()

    async def saved_model(self, info: TrainedInfo) -> None:
        if self.runtime.trained is not None:
            await self.runtime.trained.refresh()


Task = Callable[[JobContext], Awaitable[dict[str, Any]]]
