"""Start the router for the app's services (deskml/container.py), and describe it for the start-up banner."""

from __future__ import annotations

import secrets
import socket

from prometheus_client import CollectorRegistry

from deskml.core.errors import BadRequest
from deskml.runtime.upstream.config import load_config
from deskml.runtime.upstream.local import LocalModels
from deskml.runtime.upstream.router import UpstreamRouter
from deskml.settings import Settings


def node_id_for(settings: Settings) -> str:
    return settings.node_name or f"{socket.gethostname()}-{secrets.token_hex(3)}"


async def start_router(settings: Settings, node_id: str, local: LocalModels,
                       metrics: CollectorRegistry | None = None) -> UpstreamRouter | None:
    """The started router (None without DESKML_UPSTREAMS_FILE); close it with `UpstreamRouter.close`.

    Raises BadRequest when the file is unreadable or invalid: the message names the file and the problem."""
    if settings.upstreams_file is None:
        if settings.forward_only:
            raise BadRequest("DESKML_FORWARD_ONLY is set but DESKML_UPSTREAMS_FILE is not: a node that only "
                             "forwards needs upstreams to forward to (docs/routing.md)")
        return None
    config = load_config(settings.upstreams_file)
    router = UpstreamRouter(config, node_id, local.serves, registry=metrics, canonical=local.canonical)
    await router.start()
    return router


def router_summary(router: UpstreamRouter | None, settings: Settings) -> list[str]:
    if router is None:
        return []
    only = ", forward only (no local models)" if settings.forward_only else ""
    lines = [f"  routing: node {router.node_id}, {len(router.upstreams)} upstream(s), "
             f"{len(router.config.rules)} rule(s), strategy {router.config.router.strategy}{only}"]
    for item in router.status()[1:]:
        if item["up"]:
            lines.append(f"    {item['name']} ({item['kind']} {item['url']}): ok, {len(item['models'])} model(s)")
        else:
            lines.append(f"    {item['name']} ({item['kind']} {item['url']}): NOT USABLE: {item['error']}")
    return lines
