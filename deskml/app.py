"""The app factory: everything is built in the lifespan and kept on `app.state`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from deskml import __version__
from deskml.api.admin.network import router as network_router
from deskml.api.admin.router import router as admin_router
from deskml.api.backend.jobs import router as jobs_router
from deskml.api.backend.media import router as backend_media_router
from deskml.api.backend.router import router as backend_router
from deskml.api.errors import ContainErrors, install_handlers
from deskml.api.guard import LOCAL_ORIGIN_REGEX, ClientAddress, HostOriginGuard
from deskml.api.hops import NodeHops
from deskml.api.hub.router import router as hub_router
from deskml.api.methods import MethodsMiddleware
from deskml.api.middleware import BodySizeLimit, JsonBodyDefault
from deskml.api.ollama.router import router as ollama_router
from deskml.api.openai.batch_lines import batch_handlers
from deskml.api.openai.batches import router as batches_router
from deskml.api.openai.media import router as openai_media_router
from deskml.api.openai.router import router as openai_router
from deskml.api.openapi import install_openapi
from deskml.api.rerank.router import router as rerank_router
from deskml.api.ui.config import router as ui_config_router
from deskml.api.ui.conversations import router as conversations_router
from deskml.api.ui.static import UI_PREFIX, ui_files
from deskml.api.ui.static import router as ui_router
from deskml.engines.contract import EngineLoader
from deskml.runtime.hub.service import Hub
from deskml.runtime.inference import InferenceService
from deskml.runtime.jobs.setup import start_jobs, stop_jobs
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.media import MediaService
from deskml.runtime.media_catalog import media_specs
from deskml.runtime.registry import Registry
from deskml.runtime.routing import node_id_for, start_router, stop_router
from deskml.runtime.service_catalog import service_specs
from deskml.runtime.service_models import user_detector_specs
from deskml.runtime.service_tasks import ServiceTasks
from deskml.runtime.services import ServiceManager
from deskml.runtime.store import ModelStore
from deskml.services.auth_middleware import AuthMiddleware
from deskml.services.datalayer import start_data_services, stop_data_services
from deskml.services.discovery import start_discovery, stop_discovery
from deskml.services.fileperms import private_dir
from deskml.services.metrics import router as metrics_router
from deskml.services.observe import Observe
from deskml.services.production import start_traffic_services, stop_traffic_services
from deskml.services.ratelimit import RateLimit
from deskml.settings import Settings

log = logging.getLogger("deskml")


def create_app(settings: Settings | None = None, on_ready: Callable[[FastAPI], None] | None = None, *,
               engine_loader: EngineLoader | None = None) -> FastAPI:
    """The app; `engine_loader` replaces llama.cpp for language models (tests: `tests/fake_engine.py`)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        private_dir(settings.data_dir)  # 0700: it holds the database with key hashes and the signing key
        await start_traffic_services(app.state, settings)
        store = ModelStore.for_settings(settings)
        freed = store.clean_partials()
        if freed:
            log.info("deleted %d bytes of unfinished uploads left by an earlier run", freed)
        registry = Registry(store)
        manager = ModelManager(settings, registry, loader=engine_loader)
        app.state.settings = settings
        app.state.registry = registry
        app.state.hub = Hub(settings, registry)
        app.state.manager = manager
        app.state.inference = InferenceService(settings, registry, manager, cache=app.state.response_cache)
        services = ServiceManager(service_specs() + media_specs(settings), settings.keep_alive,
                                  gpu_services=settings.gpu_services)
        app.state.services = services
        detectors = (settings.detect_models_dir or settings.data_dir / "detectors").expanduser()
        services.specs.extend(user_detector_specs(detectors))
        app.state.service_tasks = ServiceTasks(
            services, batch_size=settings.batch_max_size, batch_wait=settings.batch_wait_ms / 1000
        )
        app.state.inference.service_tasks = app.state.service_tasks
        await start_router(app.state, settings)
        app.state.media = MediaService(services, settings.image_models_path)
        await start_data_services(app.state, settings)
        await start_discovery(app.state, settings)
        manager.start()
        services.start()
        await start_jobs(app.state, settings, batch_handlers())
        if settings.preload:
            await manager.ensure_loaded(settings.default_model)
        if on_ready is not None:
            on_ready(app)
        try:
            yield
        finally:
            await stop_jobs(app.state)  # running jobs go back to the queue for the next start
            await stop_discovery(app.state)
            await app.state.service_tasks.close()
            await services.close()
            await manager.close()
            await stop_traffic_services(app.state)
            await stop_data_services(app.state)
            await stop_router(app.state)

    app = FastAPI(title="deskml", version=__version__, lifespan=lifespan)
    app.state.node_id = node_id_for(settings)
    app.add_middleware(NodeHops)  # innermost: the router below reads the X-Deskml-Via it sets
    # Innermost of the production layer: limits key on the caller that auth (added next) identifies.
    app.add_middleware(RateLimit)
    if settings.auth != "off":
        # Innermost: CORS answers preflights without credentials and decorates 401s.
        app.add_middleware(AuthMiddleware)
    app.add_middleware(MethodsMiddleware)  # inside CORS, which answers preflights; plain OPTIONS, HEAD, 405s
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.origins,
        allow_origin_regex=LOCAL_ORIGIN_REGEX,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "X-Request-Id", "X-Deskml-Cache", "X-RateLimit-Limit",
                        "X-RateLimit-Remaining", "X-RateLimit-Reset"],
    )
    app.add_middleware(JsonBodyDefault)
    app.add_middleware(BodySizeLimit, limit=int(settings.max_upload_mb * (1 << 20)),
                       blob_limit=int(settings.max_blob_mb * (1 << 20)))
    # Before routing and auth, after the record opens: a refused Host or Origin is still in the history.
    app.add_middleware(HostOriginGuard, settings=settings)
    app.add_middleware(ContainErrors)  # an unhandled error is a whole 500; the connection stays usable
    app.add_middleware(Observe)  # every request gets a record, an id and its final status
    # Outermost: the record, rate limits and logs see the client a trusted proxy names, or the peer.
    app.add_middleware(ClientAddress, trusted=settings.trusted_proxies)
    install_handlers(app)
    install_openapi(app)
    app.include_router(ollama_router)
    app.include_router(hub_router)
    app.include_router(openai_router)
    app.include_router(rerank_router)
    app.include_router(backend_router)
    app.include_router(openai_media_router)
    app.include_router(backend_media_router)
    app.include_router(jobs_router)
    app.include_router(batches_router)
    app.include_router(metrics_router)
    app.include_router(admin_router)
    app.include_router(conversations_router)
    app.include_router(ui_config_router)
    app.include_router(ui_router)
    app.mount(UI_PREFIX, ui_files(), name="ui")
    app.include_router(network_router)
    return app
