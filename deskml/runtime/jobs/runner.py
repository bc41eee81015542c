"""Running one job: claim it, run its task with a heartbeat, record how it ended.

Both executors call `run_job`; only where it runs differs (the server's event loop, or the loop of
a `deskml worker` process). While the task runs, a watcher refreshes the job's heartbeat; when the
refresh finds the job no longer ours (cancelled over the API, from any node) it cancels the task,
which frees what it holds: scheduler slots, batchers, worker threads' results are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

from deskml.core.errors import DeskmlError
from deskml.runtime.jobs.lease import LeaseKeeper
from deskml.runtime.jobs.store import JobInfo
from deskml.runtime.jobs.tables import FAILURE, SUCCESS
from deskml.runtime.jobs.task_context import BatchHandler, JobContext, JobFailed, JobRuntime, Task

# The executors and the API's batch endpoints import these from here.
__all__ = ["BatchHandler", "JobContext", "JobFailed", "JobRuntime", "run_job", "task_for", "worker_id"]

log = logging.getLogger("deskml.jobs")


def worker_id(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


def task_for(kind: str) -> Task:
    from deskml.runtime.jobs import tasks

    try:
        return tasks.KINDS[kind]
    except KeyError:
        raise JobFailed(f"unknown job kind {kind!r}") from None


async def run_job(runtime: JobRuntime, job_id: str, worker: str, *, wait_if_busy: bool = False,
                  on_start: Callable[[asyncio.Task[Any]], None] | None = None) -> JobInfo | None:
    """Claim and run a job; returns its final record (None when it does not exist).

    `wait_if_busy`: when another live runner holds the job (a broker delivered the message twice),
    wait until that runner finishes, or dies and the job can be taken over.
    """
    store = runtime.store
    while True:
        outcome, job = await asyncio.to_thread(store.claim, job_id, worker)
        if outcome != "busy" or not wait_if_busy:
            break
        await asyncio.sleep(store.heartbeat_seconds)
    if outcome != "run" or job is None:
        return job
    ctx = JobContext(runtime, job, worker)
    log.info("job %s (%s) started on %s, attempt %d of %d", job.id, job.kind, worker, job.attempts,
             job.max_attempts)
    keeper = LeaseKeeper(store.db.url, job.id, worker, store.heartbeat_seconds)
    await asyncio.to_thread(keeper.start)
    task = asyncio.create_task(_execute(ctx), name=f"deskml-job-{job.id}")
    if on_start is not None:
        on_start(task)
    watcher = asyncio.create_task(_watch(ctx, task, keeper), name=f"deskml-job-watch-{job.id}")
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done() or ctx._lost:  # the task itself was cancelled: the job was
            await _settle_cancelled(ctx, task)
        else:  # this runner is shutting down: give the job back without spending an attempt
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await asyncio.to_thread(store.release, job.id, worker, "requeued: its runner shut down")
            log.info("job %s requeued: %s is shutting down", job.id, worker)
            raise
    except (JobFailed, DeskmlError) as exc:
        message = exc.message if isinstance(exc, DeskmlError) else str(exc)
        await asyncio.to_thread(store.finish, job.id, worker, FAILURE, error=message, message=message,
                                stats=ctx.stats or None, result=ctx.partial)
        log.info("job %s failed: %s", job.id, message)
    except Exception as exc:
        message = f"internal error: {type(exc).__name__}: {exc}"
        log.error("job %s failed: %s\n%s", job.id, message, "".join(traceback.format_exception(exc)))
        await asyncio.to_thread(store.finish, job.id, worker, FAILURE, error=message, message=message,
                                stats=ctx.stats or None, result=ctx.partial)
    else:
        finished = await asyncio.to_thread(store.finish, job.id, worker, SUCCESS, result=result, message="done",
                                           stats=ctx.stats or None)
        if finished:
            log.info("job %s succeeded", job.id)
        else:  # cancelled while its last step ran: the result is dropped, the job stays CANCELLED
            await _settle_cancelled(ctx, task)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await asyncio.to_thread(keeper.close)
    return await asyncio.to_thread(store.get, job.id)


async def _settle_cancelled(ctx: JobContext, task: asyncio.Task[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await asyncio.to_thread(ctx.store.settle_cancelled, ctx.job.id, ctx.worker, ctx.partial, ctx.stats or None)
    log.info("job %s stopped: cancelled", ctx.job.id)


async def _execute(ctx: JobContext) -> dict[str, Any]:
    return await task_for(ctx.job.kind)(ctx)


async def _watch(ctx: JobContext, task: asyncio.Task[Any], keeper: LeaseKeeper) -> None:
    """Heartbeat; cancel the task when the job stops being ours. The keeper hears that this runner is
    alive, and carries the heartbeat while the process is frozen (lease.py)."""
    while not task.done():
        await asyncio.sleep(ctx.store.heartbeat_seconds)
        keeper.ping()
        try:
            ours = await asyncio.to_thread(ctx.store.heartbeat, ctx.job.id, ctx.worker)
        except Exception as exc:  # database briefly unreachable: the lease lasts several heartbeats
            log.warning("job %s heartbeat failed: %s", ctx.job.id, exc)
            continue
        if not ours:
            ctx._lost = True
            task.cancel()
            return
