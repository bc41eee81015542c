"""Every long-lived object of a running server, built in one order with its dependencies passed in,
and closed in the reverse order.

`build_services(settings, ...)` is what the app's lifespan enters; `Services` is what it yields, the
one typed container routes reach through `deskml/api/deps.py` and middleware through the
`ServicesRef` that `create_app` hands them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from deskml.core.errors import Busy
from deskml.engines.contract import EngineLoader
from deskml.runtime.hub.pulls import Hub
from deskml.runtime.inference import InferenceService
from deskml.runtime.jobs.runner import BatchHandler
from deskml.runtime.jobs.service import JobService
from deskml.runtime.jobs.setup import start_jobs
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.model_store import ModelStore
from deskml.runtime.registry import Registry
from deskml.runtime.service_models.catalog import service_specs
from deskml.runtime.service_models.listing import user_detector_specs, weight_bytes
from deskml.runtime.service_models.manager import ServiceManager
from deskml.runtime.service_models.media import MediaService
from deskml.runtime.service_models.media_catalog import media_specs
from deskml.runtime.service_models.tasks import ServiceTasks
from deskml.runtime.upstream.local import LocalModels
from deskml.runtime.upstream.router import UpstreamRouter
from deskml.runtime.upstream.setup import start_router
from deskml.services.auth import AuthService
from deskml.services.cache import MemoryStore, RedisStore, ResponseCacheService
from deskml.services.datalayer import close_history, open_auth, open_database, start_history
from deskml.services.db import Database
from deskml.services.discovery import Advertiser, start_advertiser
from deskml.services.drain import Drain
from deskml.services.fileperms import private_dir
from deskml.services.history import HistoryWriter
from deskml.services.logging import AccessLog
from deskml.services.metrics import Metrics
from deskml.services.ratelimit import RateLimiter
from deskml.services.records import RecordSink
from deskml.services.redis_store import redis_available
from deskml.settings import Settings

log = logging.getLogger("deskml")


@dataclass(frozen=True, slots=True)
class Services:
    """What `build_services` built, in the order it built it."""

    settings: Settings
    node_id: str  # this node's name in routing headers, the history and mDNS
    # traffic
    drain: Drain  # shutdown state: the server begins it, the request-record middleware obeys it
    ratelimiter: RateLimiter
    response_cache: ResponseCacheService | None  # None with DESKML_CACHE=false
    # models
    store: ModelStore
    registry: Registry
    hub: Hub
    manager: ModelManager  # GGUF models: load, keep_alive, slots
    service_manager: ServiceManager  # embedding, vision, speech and image models
    service_tasks: ServiceTasks
    media: MediaService
    # data
    db: Database
    auth: AuthService | None  # None with DESKML_AUTH=off
    history: HistoryWriter | None  # None with DESKML_HISTORY=false
    metrics: Metrics | None  # None with DESKML_METRICS=false
    record_sinks: list[RecordSink]  # what every finished request record is handed to
    # serving
    router: UpstreamRouter | None  # None without DESKML_UPSTREAMS_FILE
    inference: InferenceService
    advertiser: Advertiser | None  # None when the server is not advertised on mDNS
    jobs: JobService


class ServicesRef:
    """The app's one slot for its `Services`: empty until the lifespan has built them.

    `create_app` makes one and hands its accessors to the middleware, which exist before the lifespan
    runs; each accessor answers None (or nothing) while the slot is empty."""

    def __init__(self) -> None:
        self._services: Services | None = None

    def set(self, services: Services) -> None:
        self._services = services

    def peek(self) -> Services | None:
        return self._services

    def get(self) -> Services:
        if self._services is None:
            # Only before the lifespan has built them or after it closed them: a clear 503, never a 500.
            raise Busy("the server is starting or stopping", retry_after=1.0)
        return self._services

    def drain(self) -> Drain | None:
        return self._services.drain if self._services is not None else None

    def record_sinks(self) -> Sequence[RecordSink]:
        return self._services.record_sinks if self._services is not None else ()

    def ratelimiter(self) -> RateLimiter | None:
        return self._services.ratelimiter if self._services is not None else None

    def auth(self) -> AuthService | None:
        return self._services.auth if self._services is not None else None


def _response_cache(settings: Settings, redis_url: str | None) -> ResponseCacheService | None:
    if not settings.cache:
        return None
    store = RedisStore(redis_url) if redis_url else MemoryStore(
        settings.cache_max_entries, int(settings.cache_max_mb * (1 << 20))
    )
    return ResponseCacheService(store, settings.cache_ttl)


def _service_manager(settings: Settings) -> ServiceManager:
    detectors = (settings.detect_models_dir or settings.data_dir / "detectors").expanduser()
    specs = service_specs() + media_specs(settings) + user_detector_specs(detectors)
    return ServiceManager(specs, settings.keep_alive, gpu_services=settings.gpu_services)


@asynccontextmanager
async def build_services(settings: Settings, node_id: str, batch_handlers: dict[str, BatchHandler], *,
                         engine_loader: EngineLoader | None = None) -> AsyncIterator[Services]:
    """Build every long-lived object, yield them, then close them in the reverse order: jobs stop first
    (running ones go back to the queue), the history writes what it buffers, models unload last.

    Raises StartupError (Redis configured but unreachable), DatabaseError, InsecureBind or BadRequest
    (an invalid upstreams file); what was built before the failure is closed again."""
    private_dir(settings.data_dir)  # 0700: it holds the database with key hashes and the signing key
    async with AsyncExitStack() as stack:
        # traffic: the shutdown drain, rate limits and the response cache (in Redis when configured)
        drain = Drain()
        drain.bind(asyncio.get_running_loop())
        stack.callback(drain.close)
        redis_url = await redis_available(settings)
        ratelimiter = RateLimiter(settings, redis_url)
        stack.push_async_callback(ratelimiter.close)
        response_cache = _response_cache(settings, redis_url)
        if response_cache is not None:
            stack.push_async_callback(response_cache.close)
        log.debug("rate limits and cache on %s", "redis" if redis_url else "memory")

        # models
        store = ModelStore.for_settings(settings)
        freed = store.clean_partials()
        if freed:
            log.info("deleted %d bytes of unfinished uploads left by an earlier run", freed)
        registry = Registry(store)
        hub = Hub(settings, registry)
        manager = ModelManager(settings, registry, loader=engine_loader)
        manager.start()
        stack.push_async_callback(manager.close)
        service_manager = _service_manager(settings)
        service_manager.start()
        stack.push_async_callback(service_manager.close)
        service_tasks = ServiceTasks(service_manager, batch_size=settings.batch_max_size,
                                     batch_wait=settings.batch_wait_ms / 1000)
        stack.push_async_callback(service_tasks.close)
        media = MediaService(service_manager, settings.image_models_path)

        # data: the database (migrated), auth, the history writer
        db = await open_database(settings)
        stack.callback(db.close)
        auth = await open_auth(settings, db)
        if auth is not None:
            stack.push_async_callback(auth.close)
        history = start_history(settings, db, node_id)
        if history is not None:
            stack.push_async_callback(close_history, history)

        # observability: every finished request record goes to metrics, the access log and the history
        metrics = Metrics(manager, service_manager, history, drain, weight_bytes) if settings.metrics else None
        record_sinks: list[RecordSink] = []
        if metrics is not None:
            record_sinks.append(metrics.observe)
        record_sinks.append(AccessLog())
        if history is not None:
            record_sinks.append(history.submit)

        # serving: the upstream router (which asks LocalModels what this node serves), then inference
        router = await start_router(settings, node_id, LocalModels(registry, service_tasks,
                                                                   forward_only=settings.forward_only),
                                    metrics.registry if metrics is not None else None)
        if router is not None:
            stack.push_async_callback(router.close)
        inference = InferenceService(settings, registry, manager, cache=response_cache,
                                     service_tasks=service_tasks, router=router)
        advertiser = await start_advertiser(settings, node_id, auth is not None and not auth.allow_anonymous)
        if advertiser is not None:
            stack.push_async_callback(advertiser.close)
        jobs = await start_jobs(settings, db, service_manager, service_tasks, inference, batch_handlers)
        stack.push_async_callback(jobs.close)  # first to close: running jobs go back to the queue

        if settings.preload:
            await manager.ensure_loaded(settings.default_model)
        yield Services(
            settings=settings, node_id=node_id, drain=drain, ratelimiter=ratelimiter, response_cache=response_cache,
            store=store, registry=registry, hub=hub, manager=manager, service_manager=service_manager,
            service_tasks=service_tasks, media=media, db=db, auth=auth, history=history, metrics=metrics,
            record_sinks=record_sinks, router=router, inference=inference, advertiser=advertiser, jobs=jobs,
        )
