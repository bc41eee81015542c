"""The app factory: the middleware stack and the routes; the lifespan builds the services
(deskml/container.py) and keeps them in the app's one slot."""

from __future__ import annotations

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
from deskml.api.deps import install as install_services
from deskml.api.errors import install_handlers
from deskml.api.hub.router import router as hub_router
from deskml.api.metrics import router as metrics_router
from deskml.api.middleware.auth import AuthMiddleware
from deskml.api.middleware.body import BodySizeLimit, JsonBodyDefault
from deskml.api.middleware.errors import ContainErrors
from deskml.api.middleware.guard import LOCAL_ORIGIN_REGEX, ClientAddress, HostOriginGuard
from deskml.api.middleware.hops import NodeHops
from deskml.api.middleware.methods import MethodsMiddleware
from deskml.api.middleware.observe import Observe
from deskml.api.middleware.ratelimit import RateLimit
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
from deskml.container import Services, ServicesRef, build_services
from deskml.engines.contract import EngineLoader
from deskml.runtime.upstream.setup import node_id_for
from deskml.settings import Settings


def create_app(settings: Settings | None = None, on_ready: Callable[[Services], None] | None = None, *,
               engine_loader: EngineLoader | None = None) -> FastAPI:
    """The app; `on_ready` is called with its services once the lifespan has built them; `engine_loader`
    replaces llama.cpp for language models (tests: `tests/fake_engine.py`)."""
    settings = settings or Settings()
    node_id = node_id_for(settings)
    ref = ServicesRef()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(settings, node_id, batch_handlers(), engine_loader=engine_loader) as services:
            # Kept after shutdown too: a request the drain cut short still hands its record to the sinks.
            ref.set(services)
            if on_ready is not None:
                on_ready(services)
            yield

    app = FastAPI(title="deskml", version=__version__, lifespan=lifespan)
    install_services(app, ref)
    app.add_middleware(NodeHops, node_id=node_id)  # innermost: the router below reads the X-Deskml-Via it sets
    # Innermost of the production layer: limits key on the caller that auth (added next) identifies.
    app.add_middleware(RateLimit, limiter=ref.ratelimiter)
    if settings.auth != "off":
        # Innermost: CORS answers preflights without credentials and decorates 401s.
        app.add_middleware(AuthMiddleware, auth=ref.auth)
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
    # every request gets a record, an id and its final status
    app.add_middleware(Observe, drain=ref.drain, sinks=ref.record_sinks)
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
