"""Keep a pull of a caller's URL off this machine's own network unless the caller may go there.

`/api/pull https://...` makes the server fetch a URL, so without a check any caller with the models
scope could make it reach services only it can see (loopback, the LAN, a cloud metadata address).
Every request such a pull sends (redirects too) first resolves its host and is refused when any
address is not a public one; after connecting, the address actually reached is checked again, so a
name that resolves differently the second time (DNS rebinding) is caught before the body is read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

import httpx

from deskml.core.errors import BadRequest, Forbidden, UpstreamError

_PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


def _refusal(host: str, address: str) -> Forbidden:
    return Forbidden(f"pulling from {host} ({address}, a loopback, link-local or private address) needs the "
                     f"admin scope or DESKML_PULL_PRIVATE_URLS=true")


async def check_public_host(host: str) -> None:
    """Raise Forbidden unless every address `host` resolves to is public."""
    name = host.strip("[]")
    if not name:
        raise BadRequest("the URL has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UpstreamError(f"cannot resolve {name}: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        if not is_public(address):
            raise _refusal(name, address)


async def _before(request: httpx.Request) -> None:
    await check_public_host(request.url.host)


async def _after(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer and not is_public(str(peer[0])):
        await response.aclose()
        raise _refusal(response.request.url.host, str(peer[0]))


def guard_client(client: httpx.AsyncClient) -> None:
    """Make every request `client` sends (redirects included) refuse non-public addresses."""
    client.event_hooks["request"].append(_before)
    if not any(os.environ.get(var) for var in _PROXY_VARS):
        # Through a proxy the peer is the proxy itself; the name was still checked before sending.
        client.event_hooks["response"].append(_after)
