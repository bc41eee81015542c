"""Start and stop the router for the app factory's lifespan, and describe it for the start-up banner."""

from __future__ import annotations

import secrets
import socket
from typing import Any

from deskml.core.errors import BadRequest
from deskml.runtime.router import Router
from deskml.runtime.upstreams import load_config
from deskml.settings import Settings


def node_id_for(settings: Settings) -> str:
    return settings.node_name or f"{socket.gethostname()}-{secrets.token_hex(3)}"


async def start_router(state: Any, settings: Settings) -> None:
    """Put `router` on `state` (None without DESKML_UPSTREAMS_FILE) and hand it to the inference service.

    Raises BadRequest when the file is unreadable or invalid: the message names the file and the problem."""
    state.router = None
    if settings.upstreams_file is None:
        if settings.forward_only:
            raise BadRequest("DESKML_FORWARD_ONLY is set but DESKML_UPSTREAMS_FILE is not: a node that only "
                             "forwards needs upstreams to forward to (docs/routing.md)")
        return
    config = load_config(settings.upstreams_file)
    metrics = getattr(state, "metrics", None)
    router = Router(config, state.node_id, state.inference.serves_locally,
                    registry=metrics.registry if metrics is not None else None,
                    canonical=state.inference.canonical_name)
    await router.start()
    state.router = router
    state.inference.router = router


async def stop_router(state: Any) -> None:
    router: Router | None = getattr(state, "router", None)
    if router is not None:
        await router.close()


def router_summary(state: Any) -> list[str]:
    router: Router | None = getattr(state, "router", None)
    if router is None:
        return []
    only = ", forward only (no local models)" if state.settings.forward_only else ""
    lines = [f"  routing: node {router.node_id}, {len(router.upstreams)} upstream(s), "
             f"{len(router.config.rules)} rule(s), strategy {router.config.router.strategy}{only}"]
    for item in router.status()[1:]:
        if item["up"]:
            lines.append(f"    {item['name']} ({item['kind']} {item['url']}): ok, {len(item['models'])} model(s)")
        else:
            lines.append(f"    {item['name']} ({item['kind']} {item['url']}): NOT USABLE: {item['error']}")
    return lines
