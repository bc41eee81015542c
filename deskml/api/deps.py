"""What routes receive from the running app, as typed FastAPI dependencies.

Every route takes what it needs as a parameter, e.g. `inference: InferenceDep`; each accessor reads
the app's one `Services` container (deskml/container.py), which the lifespan built. Nothing else in
`deskml/api` reads `app.state`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from deskml.container import Services, ServicesRef
from deskml.core.principal import ANONYMOUS, Principal, principal_in
from deskml.runtime.hub.pulls import Hub
from deskml.runtime.inference import InferenceService
from deskml.runtime.jobs.service import JobService
from deskml.runtime.lifecycle import ModelManager
from deskml.runtime.registry import Registry
from deskml.runtime.service_models.manager import ServiceManager
from deskml.runtime.service_models.media import MediaService
from deskml.runtime.service_models.tasks import ServiceTasks
from deskml.runtime.upstream.router import UpstreamRouter
from deskml.services.auth import AuthService
from deskml.services.db import Database
from deskml.services.history import HistoryWriter
from deskml.services.metrics import Metrics
from deskml.settings import Settings


def install(app: FastAPI, ref: ServicesRef) -> None:
    """Give `app` its one slot: the reference the lifespan fills (create_app calls this once)."""
    app.state.services = ref


def services_ref(app: FastAPI) -> ServicesRef:
    ref = app.state.services
    if not isinstance(ref, ServicesRef):
        raise RuntimeError("this app was not made by deskml.app.create_app: it has no services slot")
    return ref


def built_services(request: Request) -> Services | None:
    """The app's services, or None before its lifespan has built them (for error handlers)."""
    return services_ref(request.app).peek()


def services(request: Request) -> Services:
    return services_ref(request.app).get()


ServicesDep = Annotated[Services, Depends(services)]


def settings(request: Request) -> Settings:
    return services(request).settings


def inference(request: Request) -> InferenceService:
    return services(request).inference


def registry(request: Request) -> Registry:
    return services(request).registry


def manager(request: Request) -> ModelManager:
    return services(request).manager


def service_manager(request: Request) -> ServiceManager:
    return services(request).service_manager


def service_tasks(request: Request) -> ServiceTasks:
    return services(request).service_tasks


def media(request: Request) -> MediaService:
    return services(request).media


def hub(request: Request) -> Hub:
    return services(request).hub


def jobs(request: Request) -> JobService:
    return services(request).jobs


def database(request: Request) -> Database:
    return services(request).db


def auth(request: Request) -> AuthService | None:
    return services(request).auth


def history(request: Request) -> HistoryWriter | None:
    return services(request).history


def upstream_router(request: Request) -> UpstreamRouter | None:
    return services(request).router


def metrics(request: Request) -> Metrics | None:
    return services(request).metrics


def upload_limit(request: Request) -> int:
    """The largest request body a route reads into memory, in bytes (DESKML_MAX_UPLOAD_MB)."""
    return int(services(request).settings.max_upload_mb * (1 << 20))


def principal(request: Request) -> Principal:
    """Who made the request (set by the auth middleware); anonymous, with every scope, when auth is off."""
    return principal_in(request.scope) or ANONYMOUS


SettingsDep = Annotated[Settings, Depends(settings)]
InferenceDep = Annotated[InferenceService, Depends(inference)]
RegistryDep = Annotated[Registry, Depends(registry)]
ManagerDep = Annotated[ModelManager, Depends(manager)]
ServiceManagerDep = Annotated[ServiceManager, Depends(service_manager)]
ServiceTasksDep = Annotated[ServiceTasks, Depends(service_tasks)]
MediaDep = Annotated[MediaService, Depends(media)]
HubDep = Annotated[Hub, Depends(hub)]
JobsDep = Annotated[JobService, Depends(jobs)]
DatabaseDep = Annotated[Database, Depends(database)]
AuthDep = Annotated[AuthService | None, Depends(auth)]
HistoryDep = Annotated[HistoryWriter | None, Depends(history)]
UpstreamRouterDep = Annotated[UpstreamRouter | None, Depends(upstream_router)]
MetricsDep = Annotated[Metrics | None, Depends(metrics)]
UploadLimitDep = Annotated[int, Depends(upload_limit)]
PrincipalDep = Annotated[Principal, Depends(principal)]
