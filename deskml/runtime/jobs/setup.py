"""Start and stop the job system for the app factory's lifespan (after the database is open)."""

from __future__ import annotations

from typing import Any

from deskml.runtime.jobs.runner import BatchHandler, JobRuntime
from deskml.runtime.jobs.service import JobService
from deskml.runtime.jobs.serving import TrainedModels
from deskml.runtime.jobs.store import JobStore
from deskml.settings import Settings

TRAINED_REFRESH_SECONDS = 10.0


async def start_jobs(state: Any, settings: Settings, batch_handlers: dict[str, BatchHandler]) -> None:
    """Put `jobs` (a JobService) on `state`; needs `db`, `services`, `service_tasks`, `inference`."""
    store = JobStore(state.db, settings.jobs_heartbeat_seconds)
    trained = TrainedModels(store, state.services, settings.data_dir / "trained")
    await trained.refresh()
    trained.start(TRAINED_REFRESH_SECONDS)
    runtime = JobRuntime(settings=settings, store=store, services=state.services, service_tasks=state.service_tasks,
                         inference=state.inference, batch_handlers=batch_handlers, trained=trained)
    executor: Any
    if settings.broker_url:
        from deskml.runtime.jobs.celery_exec import CeleryExecutor

        executor = CeleryExecutor(settings, store)
    else:
        from deskml.runtime.jobs.embedded import EmbeddedExecutor

        executor = EmbeddedExecutor(runtime, settings.jobs_concurrency)
    executor.start()
    state.jobs = JobService(settings, store, executor, state.services, trained)


async def stop_jobs(state: Any) -> None:
    jobs: JobService | None = getattr(state, "jobs", None)
    if jobs is not None:
        await jobs.close()
