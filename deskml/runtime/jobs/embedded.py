"""The embedded executor: jobs run in the server's own event loop, `DESKML_JOBS_CONCURRENCY` at once.

The queue is the database, not memory: a submitted job only wakes the loop, which claims queued
jobs oldest first. So after a restart (or a crash) the next start finds the queued jobs and runs
them, and finds jobs whose runner stopped sending heartbeats and retries them once (then fails them
with the reason). The same scan every heartbeat period picks up jobs queued by other servers on
the same database, so several servers share one queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from deskml.core.aio import wait_event
from deskml.runtime.jobs.runner import JobRuntime, run_job, worker_id
from deskml.runtime.jobs.store import JobInfo

log = logging.getLogger("deskml.jobs")


class EmbeddedExecutor:
    name = "embedded"

    def __init__(self, runtime: JobRuntime, concurrency: int) -> None:
        self.runtime = runtime
        self.concurrency = max(1, concurrency)
        self.worker = worker_id("embedded")
        self.running: dict[str, asyncio.Task[Any]] = {}  # job id -> run_job task
        self._inner: dict[str, asyncio.Task[Any]] = {}  # job id -> the task's own coroutine
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run_forever(), name="deskml-jobs-embedded")

    async def submit(self, job: JobInfo) -> None:
        self._wake.set()

    async def cancelled(self, job_id: str) -> None:
        """Stop a job of ours at once (its state is CANCELLED already) and wait until it has."""
        inner = self._inner.get(job_id)
        outer = self.running.get(job_id)
        if inner is not None and not inner.done():
            inner.cancel()
        if outer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(outer), timeout=30)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # Running jobs go back to the queue for the next start (run_job releases them when cancelled).
        for task in list(self.running.values()):
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _run_forever(self) -> None:
        period = self.runtime.store.heartbeat_seconds
        while True:
            try:
                await self._fill()
            except Exception as exc:  # the database may be briefly away; the next round retries
                log.warning("could not scan the job queue: %s", exc)
            self._wake.clear()
            await wait_event(self._wake, period)

    async def _fill(self) -> None:
        free = self.concurrency - len(self.running)
        if free <= 0:
            return
        for job_id in await asyncio.to_thread(self.runtime.store.runnable, self.name, 4 * self.concurrency + 4):
            if free <= 0:
                break
            if job_id in self.running:
                continue
            self.running[job_id] = asyncio.create_task(self._run(job_id), name=f"deskml-job-runner-{job_id}")
            free -= 1

    async def _run(self, job_id: str) -> None:
        def started(task: asyncio.Task[Any]) -> None:
            self._inner[job_id] = task

        try:
            await run_job(self.runtime, job_id, self.worker, on_start=started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("job %s: the runner failed: %s", job_id, exc)
        finally:
            self.running.pop(job_id, None)
            self._inner.pop(job_id, None)
            self._wake.set()  # a slot is free: look at the queue again
