"""Middleware for routing between deskml nodes: reads `X-Deskml-Via` (the nodes a request passed
through) into a ContextVar for the router, and names this node in `X-Deskml-Node` on every reply, so
a node that routes here learns who answers and can refuse to send a request back where it came from."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskml.core.hops import NODE_HEADER, VIA_HEADER, parse_via, reset_via, set_via


class NodeHops:
    def __init__(self, app: ASGIApp, node_id: str) -> None:
        self.app = app
        self.node_id = node_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        node_id = self.node_id
        via = parse_via(Headers(scope=scope).get(VIA_HEADER))

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start" and node_id:
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (NODE_HEADER.encode(), node_id.encode())]
            await send(message)

        token = set_via(via)
        try:
            await self.app(scope, receive, send_named)
        finally:
            reset_via(token)
