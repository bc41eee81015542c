"""Start the job system for the app's services (deskml/container.py), after the database is open."""

from __future__ import annotations

from deskml.runtime.inference import InferenceService
from deskml.runtime.jobs.runner import BatchHandler, JobRuntime
from deskml.runtime.jobs.service import Executor, JobService
from deskml.runtime.jobs.serving import TrainedModels
from deskml.runtime.jobs.store import JobStore
from deskml.runtime.service_models.manager import ServiceManager
from deskml.runtime.service_models.tasks import ServiceTasks
from deskml.services.db import Database
from deskml.settings import Settings

TRAINED_REFRESH_SECONDS = 10.0


async def start_jobs(settings: Settings, db: Database, services: ServiceManager, service_tasks: ServiceTasks,
                     inference: InferenceService, batch_handlers: dict[str, BatchHandler]) -> JobService:
    """The running job service (embedded executor, or Celery with DESKML_BROKER_URL); `JobService.close`
    stops it and hands running jobs back to the queue."""
    store = JobStore(db, settings.jobs_heartbeat_seconds)
    trained = TrainedModels(store, services, settings.data_dir / "trained")
    await trained.refresh()
    trained.start(TRAINED_REFRESH_SECONDS)
    runtime = JobRuntime(settings=settings, store=store, services=services, service_tasks=service_tasks,
                         inference=inference, batch_handlers=batch_handlers, trained=trained)
    executor: Executor
    if settings.broker_url:
        from deskml.runtime.jobs.celery_exec import CeleryExecutor

        executor = CeleryExecutor(settings, store)
    else:
        from deskml.runtime.jobs.embedded import EmbeddedExecutor

        executor = EmbeddedExecutor(runtime, settings.jobs_concurrency)
    executor.start()
    return JobService(settings, store, executor, services, trained)
