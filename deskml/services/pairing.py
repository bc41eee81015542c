"""Pairing a phone: the payload a QR code carries (URLs, API key, certificate fingerprint) and its
renderings (terminal, PNG, SVG). The format is documented in docs/pairing.md; apps parse the JSON.

    {"type": "deskml-pair", "v": 1, "name": "desk", "urls": ["http://192.168.1.20:11434"],
     "key": "dk_…", "tls": {"sha256": "AB:CD:…"} | null, "version": "0.1.0",
     "api": {"ollama": "/api", "openai": "/v1", "backend": "/api/llm"}}
"""

from __future__ import annotations

import io
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from deskml import __version__
from deskml.services.netinfo import is_loopback, lan_addresses
from deskml.settings import Settings

PAYLOAD_TYPE = "deskml-pair"
PAYLOAD_VERSION = 1
API_PATHS = {"ollama": "/api", "openai": "/v1", "backend": "/api/llm"}


class PairTLS(BaseModel):
    sha256: str = Field(description="SHA-256 of the server certificate (DER), colon-separated upper-case hex.")


class PairPayload(BaseModel):
    type: str = PAYLOAD_TYPE
    v: int = PAYLOAD_VERSION
    name: str = Field(description="A name to show for the server (its host name).")
    urls: list[str] = Field(description="Base URLs to try in order; the first that answers /api/version wins.")
    key: str | None = Field(None, description="API key to send as 'Authorization: Bearer <key>'; null = none needed.")
    tls: PairTLS | None = Field(None, description="Pin this certificate; null when the server speaks plain HTTP.")
    version: str = __version__
    api: dict[str, str] = Field(default_factory=lambda: dict(API_PATHS))


def server_urls(settings: Settings, extra: list[str] | None = None) -> list[str]:
    """The URLs a phone on the LAN should use: the bound address if it is one, else every LAN address."""
    scheme = "https" if settings.tls_cert else "http"
    host = settings.host.strip("[]")
    if is_loopback(host):
        hosts: list[str] = []
    elif _unspecified(host):
        hosts = lan_addresses()
    else:
        hosts = [host]
    urls = [f"{scheme}://{_bracket(h)}:{settings.port}" for h in hosts]
    return [*(extra or []), *urls]


def free_key_name(taken: set[str], base: str = "phone") -> str:
    """`base`, or `base-2`, `base-3`… whichever no active key has: pairing twice (or pairing after
    `deskml keys create --name phone`) must not fail on the name alone."""
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def reachability_warning(settings: Settings, payload: PairPayload) -> dict[str, str] | None:
    """Why a phone could not use this payload and what to do, or None when it can."""
    if payload.urls:
        return None
    if is_loopback(settings.host):
        return {"reason": f"the server binds {settings.host} (DESKML_HOST), which a phone cannot reach",
                "fix": "start the server with `deskml serve --host 0.0.0.0` (and pass --host 0.0.0.0 to "
                       "`deskml pair`), or give a reachable address with --url"}
    return {"reason": "no LAN address found on this computer",
            "fix": "connect this computer to the phone's network, or give a reachable address with --url"}


def certificate_fingerprint(settings: Settings) -> str | None:
    if settings.tls_cert is None:
        return None
    from deskml.services.tls import fingerprint_of

    return fingerprint_of(Path(settings.tls_cert).expanduser().read_bytes())


def build_payload(settings: Settings, key: str | None, extra_urls: list[str] | None = None) -> PairPayload:
    fingerprint = certificate_fingerprint(settings)
    return PairPayload(
        name=settings.node_name or socket.gethostname(), urls=server_urls(settings, extra_urls), key=key,
        tls=PairTLS(sha256=fingerprint) if fingerprint else None,
    )


def payload_text(payload: PairPayload) -> str:
    """The exact text inside the QR code: compact JSON, so the code stays small enough to scan easily."""
    return json.dumps(payload.model_dump(), separators=(",", ":"), ensure_ascii=False)


def _qr(payload: PairPayload) -> Any:
    import segno

    return segno.make(payload_text(payload), error="m", micro=False)


def qr_terminal(payload: PairPayload) -> str:
    buffer = io.StringIO()
    _qr(payload).terminal(out=buffer, compact=True, border=2)
    return buffer.getvalue()


def qr_png(payload: PairPayload, scale: int = 6) -> bytes:
    buffer = io.BytesIO()
    _qr(payload).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def qr_svg(payload: PairPayload, scale: int = 6) -> str:
    buffer = io.BytesIO()
    _qr(payload).save(buffer, kind="svg", scale=scale, border=4, xmldecl=False)
    return buffer.getvalue().decode()


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
