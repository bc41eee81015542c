"""What may reach the app at all: the Host and Origin checks, and which client address to believe.

A server on loopback is still reachable from every web page the user opens: a page may send
"simple" cross-site requests (no preflight), and a DNS-rebinding page (its own name re-pointed at
127.0.0.1) may even read the answers. `HostOriginGuard` refuses both before any routing or auth:
a Host that is not one of this server's own names, and an Origin that is neither allowed nor the
server's own. `ClientAddress` believes X-Forwarded-For / X-Real-IP only from configured proxies, so
a client cannot pick the address its rate limit and history record are keyed on. Rules: docs/auth.md.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from deskml.api.errors import dialect_for_path, send_error
from deskml.core.context import current_record
from deskml.services.discovery import mdns_host_name
from deskml.services.netinfo import is_loopback
from deskml.settings import Settings

# Browsers on this machine and app shells (Tauri, Capacitor, Electron's app://, file://).
LOCAL_ORIGIN_REGEX = r"^(https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?|app://.*|file://.*|tauri://.*|capacitor://.*)$"
_LOCAL_ORIGIN = re.compile(LOCAL_ORIGIN_REGEX)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(value: str) -> tuple[str, int | None]:
    """('name', port) from a Host header: `name`, `name:1`, `[::1]`, `[::1]:1`; lowercased, no trailing dot."""
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        host, rest = (text[1:end], text[end + 1:]) if end > 0 else (text, "")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        port = int(raw) if raw.isdigit() else None
    else:
        host = text  # a bare name, or an unbracketed IPv6 address
    return host.rstrip("."), port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _loopback_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def own_names() -> set[str]:
    """This machine's host names, as a LAN client may type them (plain, FQDN, mDNS `.local`)."""
    names: set[str] = {mdns_host_name().lower()}
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.strip().lower().rstrip(".")
        if name:
            names.add(name)
            names.add(name.split(".", 1)[0] + ".local")
    return names


class HostPolicy:
    """Which Host headers name this server. Built once per app from the settings."""

    def __init__(self, settings: Settings, machine_names: set[str] | None = None) -> None:
        bind = settings.host.strip("[]").lower()
        self.network_bind = not is_loopback(bind)
        self.any_host = False
        self.names: set[str] = {"localhost", bind}
        self.suffixes: list[str] = [".localhost"]
        for raw in settings.allowed_hosts:
            entry = raw.strip().lower()
            if entry == "*":
                self.any_host = True
            elif entry.startswith("*."):
                self.suffixes.append(entry[1:])
            elif entry:
                self.names.add(split_host(entry)[0])
        if self.network_bind:
            self.names |= own_names() if machine_names is None else machine_names

    def allows(self, host: str) -> bool:
        if self.any_host or not host or host in self.names or host.endswith(tuple(self.suffixes)):
            return True
        ip = _ip(host)
        if ip is None:
            return False
        # A rebinding page needs a name it controls; an address literal cannot be re-pointed, so on a
        # network bind any address will do (LAN, Docker port maps, NAT). On loopback only loopback ones.
        return self.network_bind or _loopback_ip(ip)


class OriginPolicy:
    """Which Origin headers may send requests: listed ones, local pages and app shells, and the server's own."""

    def __init__(self, settings: Settings) -> None:
        listed = [o.strip().lower().rstrip("/") for o in settings.origins]
        self.any_origin = "*" in listed
        self.listed = set(listed)

    def allows(self, origin: str, host: str, port: int | None) -> bool:
        origin = origin.strip().lower()
        if self.any_origin or origin in self.listed:
            return True
        if origin == "null":
            # file:// pages send it, but so does any site's sandboxed iframe: never implied.
            return False
        if _LOCAL_ORIGIN.match(origin):
            return True
        return same_origin(origin, host, port)


def same_origin(origin: str, host: str, port: int | None) -> bool:
    """Whether `origin` is the server the request reached, by the Host header (already allow-listed).

    The scheme is not compared, so a TLS-terminating proxy in front works; a Host without a port
    matches the origin's default port.
    """
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    if parts.hostname.rstrip(".") != host:
        return False
    if port is None:
        return origin_port is None or origin_port == _DEFAULT_PORTS[parts.scheme]
    return (origin_port or _DEFAULT_PORTS[parts.scheme]) == port


class HostOriginGuard:
    """403 for a request whose Host is not this server's or whose Origin is not allowed, before routing.

    It sits just inside the request-record middleware, so a refused request is still in the history
    with its X-Request-Id, and outside CORS, so an allowed origin's preflight is still answered there.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = HostPolicy(settings)
        self.origins = OriginPolicy(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        raw_host = origin = None
        for key, value in scope.get("headers") or []:
            if key == b"host" and raw_host is None:
                raw_host = value.decode("latin-1")
            elif key == b"origin" and origin is None:
                origin = value.decode("latin-1")
        host, port = split_host(raw_host or "")
        if not self.hosts.allows(host):
            await self._refuse(scope, send, f"host '{host}' is not allowed: requests must name this server "
                                            f"(add the name to DESKML_ALLOWED_HOSTS to allow it)")
            return
        if origin is not None and not self.origins.allows(origin, host, port):
            await self._refuse(scope, send, f"cross-origin request from {json.dumps(origin)} refused "
                                            f"(add the origin to DESKML_ORIGINS to allow it)")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, message: str) -> None:
        record = current_record()
        if record is not None:
            record.error = message
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        await send_error(send, dialect_for_path(scope.get("path", "")), 403, message, code="forbidden_origin")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    """Take the client address (and scheme) from a trusted proxy's headers; ignore them from anyone else.

    X-Forwarded-For is read right to left, skipping trusted proxies: the first other address is the
    client (entries further left are whatever the client chose to send). X-Real-IP is used when there
    is no X-Forwarded-For. With no trusted proxies configured this does nothing.
    """

    def __init__(self, app: ASGIApp, trusted: list[str]) -> None:
        self.app = app
        self.networks: list[Network] = [ipaddress.ip_network(item, strict=False) for item in trusted]

    def trusted(self, address: str) -> bool:
        ip = _ip(address.strip("[]"))
        if ip is None:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if self.networks and scope["type"] in {"http", "websocket"} and client and self.trusted(client[0]):
            real, proto = self.forwarded(scope.get("headers") or [])
            if real is not None:
                scope = {**scope, "client": (real, 0)}
            if proto in {"http", "https"} and scope["type"] == "http":
                scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)

    def forwarded(self, headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
        chain: list[str] = []
        real_ip = proto = None
        for key, value in headers:
            if key == b"x-forwarded-for":
                chain.extend(part.strip() for part in value.decode("latin-1").split(","))
            elif key == b"x-real-ip" and real_ip is None:
                real_ip = value.decode("latin-1").strip()
            elif key == b"x-forwarded-proto" and proto is None:
                proto = value.decode("latin-1").split(",")[0].strip().lower()
        if chain:
            for entry in reversed(chain):
                if _ip(entry.strip("[]")) is None:
                    return None, proto  # a malformed hop: believe nothing to its left
                if not self.trusted(entry):
                    return entry.strip("[]"), proto
            return chain[0].strip("[]"), proto
        if real_ip and _ip(real_ip.strip("[]")) is not None:
            return real_ip.strip("[]"), proto
        return None, proto
