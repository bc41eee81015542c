"""The Celery executor: the server sends job ids to a broker (Redis or RabbitMQ); `deskml worker`
processes, here or on other machines, run them with the same task code as the embedded executor.

The message carries only the job id: the job, its files and its progress live in the database, so
the worker needs nothing else, and any deskml node answers status. Messages are acknowledged
after the job ends (`acks_late`) and given back when a worker process is lost
(`reject_on_worker_lost`), so a worker killed mid-job leaves its message to the next worker; the
job's claim (runner.py) makes sure a redelivered message never runs a job twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from deskml.core.errors import Busy
from deskml.runtime.jobs.runner import BatchHandler, JobRuntime, run_job, worker_id
from deskml.runtime.jobs.store import JobInfo, JobStore
from deskml.settings import Settings

log = logging.getLogger("deskml.jobs")

TASK_NAME = "deskml.run_job"


def celery_app(settings: Settings) -> Any:
    try:
        from celery import Celery
    except ImportError as exc:
        raise RuntimeError("DESKML_BROKER_URL is set but Celery is not installed: pip install 'deskml[jobs]'") from exc

    if not settings.broker_url:
        raise ValueError("DESKML_BROKER_URL is not set")
    app = Celery("deskml", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker takes a new job only when it has a free slot
        task_default_queue=settings.jobs_queue,
        task_default_exchange=settings.jobs_queue,
        task_default_routing_key=settings.jobs_queue,
        task_ignore_result=True,  # results and progress go to deskml's database
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.jobs_visibility_timeout},
        # No control/event exchanges: the database is how nodes see jobs, and the broker keeps
        # nothing but the queue named DESKML_JOBS_QUEUE.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    return app


class CeleryExecutor:
    """Sends jobs to the broker, and sends again the jobs whose worker died.

    A broker gives back the message of a killed worker only on its own terms: RabbitMQ when the
    connection drops, Redis after the visibility timeout (an hour by default), and not at all if
    the dead worker held Redis's restore lock. The job's heartbeat in the database says sooner and
    surely, so every server re-sends a job whose runner went silent; the claim (store.py) makes a
    duplicate message wait or do nothing, never run the job twice at once.
    """

    name = "celery"

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.app = celery_app(settings)
        self._resent: dict[str, float] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="deskml-jobs-resend")

    async def submit(self, job: JobInfo) -> None:
        try:
            await asyncio.to_thread(self._send, job.id)
        except Exception as exc:
            raise Busy(f"could not reach the job broker: {exc}", retry_after=5.0) from exc

    def _send(self, job_id: str) -> None:
        self.app.send_task(TASK_NAME, args=[job_id], task_id=job_id, queue=self.settings.jobs_queue,
                           retry=True, retry_policy={"max_retries": 2, "interval_start": 0,
                                                     "interval_step": 0.5, "interval_max": 1})

    async def _sweep_forever(self) -> None:
        period = self.store.heartbeat_seconds
        while True:
            await asyncio.sleep(period)
            try:
                await self.resend_abandoned()
            except Exception as exc:  # database or broker briefly away: the next round retries
                log.warning("could not re-send abandoned jobs: %s", exc)

    async def resend_abandoned(self) -> list[str]:
        """Send again each job whose runner has been silent for twice the stale period, at most once
        per such period per job.

        Twice, because a duplicate that reaches a worker while the job is on its last attempt fails
        the job: a runner whose heartbeats are merely late on a busy machine must not meet one.
        """
        now = time.monotonic()
        silent_for = 2 * self.store.stale_after
        wait = silent_for.total_seconds()
        self._resent = {job_id: at for job_id, at in self._resent.items() if now - at < wait}
        sent = []
        for job_id in await asyncio.to_thread(self.store.abandoned, self.name, 100, silent_for):
            if job_id in self._resent:
                continue
            await asyncio.to_thread(self._send, job_id)
            self._resent[job_id] = now
            sent.append(job_id)
            log.info("job %s: its runner went silent; sent to the workers again", job_id)
        return sent

    async def cancelled(self, job_id: str) -> None:
        """Workers see the CANCELLED state at their next progress write or heartbeat."""

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.to_thread(self.app.close)


class WorkerRuntime:
    """One process's job runtime for Celery tasks: an event loop in its own thread with the models
    (shared by the task threads of a `threads` pool), built on the first task, so that a prefork
    pool builds one per child after the fork."""

    def __init__(self, settings: Settings, batch_handlers: dict[str, BatchHandler]) -> None:
        self.settings = settings
        self.batch_handlers = batch_handlers
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runtime: JobRuntime | None = None
        self._parts: list[Any] = []

    def run(self, job_id: str) -> str | None:
        loop = self._ensure()
        assert self._runtime is not None
        future = asyncio.run_coroutine_threadsafe(
            run_job(self._runtime, job_id, worker_id("celery"), wait_if_busy=True), loop)
        job = future.result()
        return job.state if job is not None else None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="deskml-worker-loop", daemon=True)
                thread.start()
                try:
                    asyncio.run_coroutine_threadsafe(self._build(), loop).result()
                except BaseException:
                    loop.call_soon_threadsafe(loop.stop)
                    raise
                self._loop, self._thread = loop, thread
            return self._loop

    async def _build(self) -> None:
        from deskml.runtime.inference import InferenceService
        from deskml.runtime.jobs.serving import TrainedModels
        from deskml.runtime.lifecycle import ModelManager
        from deskml.runtime.model_store import ModelStore
        from deskml.runtime.registry import Registry
        from deskml.runtime.service_models.catalog import service_specs
        from deskml.runtime.service_models.manager import ServiceManager
        from deskml.runtime.service_models.media_catalog import media_specs
        from deskml.runtime.service_models.tasks import ServiceTasks
        from deskml.services.db import Database

        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.from_settings(settings)
        await asyncio.to_thread(db.migrate)
        store = JobStore(db, settings.jobs_heartbeat_seconds)
        registry = Registry(ModelStore.for_settings(settings))
        manager = ModelManager(settings, registry)
        services = ServiceManager(service_specs() + media_specs(settings), settings.keep_alive,
                                  gpu_services=settings.gpu_services)
        tasks = ServiceTasks(services, batch_size=settings.batch_max_size, batch_wait=settings.batch_wait_ms / 1000)
        inference = InferenceService(settings, registry, manager, service_tasks=tasks)
        manager.start()
        services.start()
        trained = TrainedModels(store, services, settings.data_dir / "trained")
        await trained.refresh()
        self._runtime = JobRuntime(settings=settings, store=store, services=services, service_tasks=tasks,
                                   inference=inference, batch_handlers=self.batch_handlers, trained=trained)
        self._parts = [tasks, services, manager, db]

    def close(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            tasks, services, manager, db = self._parts
            with contextlib.suppress(Exception):
                await tasks.close()
                await services.close()
                await manager.close()
            db.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None


def make_worker_app(settings: Settings, batch_handlers: dict[str, BatchHandler]) -> Any:
    """The Celery app of a `deskml worker` process, with the job task registered."""
    from celery.signals import worker_shutdown

    app = celery_app(settings)
    runtime = WorkerRuntime(settings, batch_handlers)
    app.deskml_runtime = runtime

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_job_task(self: Any, job_id: str) -> str | None:
        return self.app.deskml_runtime.run(job_id)  # type: ignore[no-any-return]

    @worker_shutdown.connect(weak=False)
    def _closed(**_: Any) -> None:
        runtime.close()

    return app
