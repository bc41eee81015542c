"""mDNS/DNS-SD: the server advertises itself as `_deskml._tcp` when bound to a LAN address, and
`deskml discover` browses for such servers. TXT keys: version, auth (required|none), tls (1|0),
sha256 (certificate fingerprint, with TLS), node, and the API paths (ollama, openai, backend)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from deskml import __version__
from deskml.services.netinfo import is_loopback, lan_addresses
from deskml.services.pairing import API_PATHS, certificate_fingerprint
from deskml.settings import Settings

log = logging.getLogger("deskml.mdns")

SERVICE_TYPE = "_deskml._tcp.local."


def should_advertise(settings: Settings) -> bool:
    if settings.mdns == "off":
        return False
    return settings.mdns == "on" or not is_loopback(settings.host)


def txt_record(settings: Settings, node_id: str, auth_required: bool) -> dict[str, str]:
    txt = {"version": __version__, "auth": "required" if auth_required else "none",
           "tls": "1" if settings.tls_cert else "0", "node": node_id, **API_PATHS}
    fingerprint = certificate_fingerprint(settings)
    if fingerprint:
        txt["sha256"] = fingerprint
    return txt


def _addresses(settings: Settings) -> list[str]:
    host = settings.host.strip("[]")
    try:
        if not ipaddress.ip_address(host).is_unspecified:
            return [host]
    except ValueError:
        pass
    return lan_addresses()


class Advertiser:
    """Registers this server with zeroconf while the app runs."""

    def __init__(self, settings: Settings, node_id: str, auth_required: bool) -> None:
        self.settings = settings
        self.node_id = node_id
        self.auth_required = auth_required
        self._zc: Any = None
        self._info: Any = None

    async def start(self) -> None:
        from zeroconf import IPVersion, ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        addresses = _addresses(self.settings)
        if not addresses:
            log.warning("mDNS: no LAN address to advertise")
            return
        label = _label(self.settings.node_name or socket.gethostname())
        self._info = ServiceInfo(
            SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", port=self.settings.port,
            addresses=[socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a) for a in addresses],
            properties=txt_record(self.settings, self.node_id, self.auth_required),
            server=mdns_host_name() + ".",
        )
        interfaces: Any = addresses if len(addresses) == 1 and addresses[0] != "0.0.0.0" else None
        self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only, **({"interfaces": interfaces} if interfaces else {}))
        await self._zc.async_register_service(self._info, allow_name_change=True)
        log.info("mDNS: advertising %s on %s port %d", self._info.name, ", ".join(addresses), self.settings.port)

    async def close(self) -> None:
        if self._zc is None:
            return
        with contextlib.suppress(Exception):
            await self._zc.async_unregister_service(self._info)
        await self._zc.async_close()
        self._zc = None


@dataclass
class Found:
    name: str
    host: str
    port: int
    addresses: list[str]
    txt: dict[str, str] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        scheme = "https" if self.txt.get("tls") == "1" else "http"
        return [f"{scheme}://{a}:{self.port}" for a in self.addresses]


async def browse(timeout: float = 3.0) -> list[Found]:
    """deskml servers that answer on the local network within `timeout` seconds."""
    from zeroconf import IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    names: set[str] = set()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            names.add(name)

    browser = AsyncServiceBrowser(azc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        await asyncio.sleep(timeout)
        found: list[Found] = []
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 2000):
                continue
            txt = {k.decode(): (v or b"").decode() for k, v in (info.properties or {}).items()}
            found.append(Found(name.removesuffix("." + SERVICE_TYPE), (info.server or "").rstrip("."),
                               info.port or 0, info.parsed_addresses(), txt))
        return found
    finally:
        await browser.async_cancel()
        await azc.async_close()


async def start_advertiser(settings: Settings, node_id: str, auth_required: bool) -> Advertiser | None:
    """The running mDNS advertisement; None when the server is not to be advertised or cannot be."""
    if not should_advertise(settings):
        return None
    advertiser = Advertiser(settings, node_id, auth_required)
    try:
        await advertiser.start()
    except (OSError, ImportError) as exc:  # no multicast-capable interface, or zeroconf missing
        log.warning("mDNS advertisement is off: %s", exc)
        return None
    return advertiser


def mdns_host_name() -> str:
    """The `.local` name this machine is advertised under (also a Host the server accepts)."""
    return f"{_label(socket.gethostname())}.local"


def _label(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in text).strip("-")
    return (cleaned or "deskml")[:63]
