"""GET /metrics: the Prometheus text of the app's metrics (deskml/services/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from deskml.api.deps import MetricsDep, SettingsDep
from deskml.core.errors import Forbidden, Unauthorized
from deskml.core.principal import SCOPE_ADMIN, principal_in

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    if metrics is None:
        return Response("metrics are switched off (DESKML_METRICS=false)\n", status_code=404, media_type="text/plain")
    if settings.metrics_auth:
        principal = principal_in(request.scope)  # None: the auth middleware did not run (DESKML_AUTH=off)
        if principal is None or (principal.kind == "anonymous" and not principal.allows(SCOPE_ADMIN)):
            raise Unauthorized("metrics need an API key or login with the admin scope (DESKML_METRICS_AUTH)")
        if not principal.allows(SCOPE_ADMIN):
            raise Forbidden("metrics need the admin scope (DESKML_METRICS_AUTH)")
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
