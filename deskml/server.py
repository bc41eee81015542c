"""Run the app under uvicorn: port check, start-up banner, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from deskml import __version__
from deskml.api.deps import services_ref
from deskml.app import create_app
from deskml.container import Services
from deskml.core.errors import BadRequest
from deskml.runtime.upstream.config import load_config
from deskml.runtime.upstream.setup import router_summary
from deskml.services.auth import InsecureBind
from deskml.services.datalayer import preflight, summary
from deskml.services.db import DatabaseError
from deskml.services.logging import configure_logging
from deskml.services.netinfo import is_loopback, lan_addresses, port_in_use
from deskml.services.redis_store import StartupError, redis_available
from deskml.settings import Settings

log = logging.getLogger("deskml")

_FORCED_SHUTDOWN_SECONDS = 5.0


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app's drain when a signal arrives.

    uvicorn stops accepting and waits for open connections; the drain gives running requests a grace
    period and then ends their streams with a final error line, so no client is left hanging. SIGTERM
    (systemd, Docker) gives `shutdown_grace`; Ctrl-C (SIGINT) means someone is waiting at a terminal, so
    it gives `interrupt_grace`: a reply can be asked again, and jobs go back to the queue either way.
    A second signal ends the streams at once; the app's own shutdown (jobs requeued, history flushed,
    models unloaded) still runs, so the exit is clean rather than a cancelled lifespan's traceback."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float, interrupt_grace: float) -> None:
        super().__init__(config)
        self.deskml_app = app
        self.grace = grace
        self.interrupt_grace = interrupt_grace

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain = services_ref(self.deskml_app).drain()
        if drain is not None:
            if self.should_exit:
                drain.begin(0.0, "asked again")  # a second signal: end streams now
            elif sig == signal.SIGINT:
                drain.begin(self.interrupt_grace, "Ctrl-C; press it again to stop at once")
            else:
                drain.begin(self.grace, signal.Signals(sig).name)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        lifespan = getattr(self, "lifespan", None)
        if self.force_exit and lifespan is not None and not lifespan.shutdown_event.is_set():
            # uvicorn skips the app's shutdown on a forced exit; the lifespan task would then be
            # cancelled mid-wait (a traceback) and running jobs would not be handed back.
            try:
                await asyncio.wait_for(lifespan.shutdown(), _FORCED_SHUTDOWN_SECONDS)
            except TimeoutError:
                log.warning("the app's shutdown took over %ss; exiting without waiting for it",
                            _FORCED_SHUTDOWN_SECONDS)


def _exit_quietly_after_shutdown() -> None:
    # uvicorn re-raises the signal it caught once it has shut down; with these handlers in place
    # that is a no-op, so a graceful SIGTERM/SIGINT exits 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: None)


def banner(settings: Settings, loaded: list[str]) -> str:
    bind = settings.host
    shown = f"[{bind}]" if ":" in bind else bind
    scheme = "https" if settings.tls_cert else "http"
    lines = [f"deskml {__version__} listening on {scheme}://{shown}:{settings.port}"]
    lines.append(f"  data dir: {settings.data_dir}")
    lines.append(f"  default model: {settings.default_model}")
    lines.append(f"  loaded: {', '.join(loaded) or 'none yet (models load on first use)'}")
    lines.append("  APIs: Ollama /api/*, OpenAI /v1/*")
    # 0.0.0.0 is not an address a browser can open: this machine reaches the server on loopback
    local = "127.0.0.1" if bind in {"0.0.0.0", ""} else "[::1]" if bind == "::" else shown
    lines.append(f"  web UI: {scheme}://{local}:{settings.port}/ui")
    if not is_loopback(bind):
        lan = lan_addresses() if bind in {"0.0.0.0", "::", ""} else [bind]
        urls = [f"{scheme}://{_bracket(ip)}:{settings.port}" for ip in lan]
        lines.append("  from a phone on this network use: " + (", ".join(urls) or "(no LAN address found)"))
        if urls:
            lines.append("  web UI from another device: " + ", ".join(f"{url}/ui" for url in urls))
    else:
        lines.append("  loopback only: other devices cannot connect (use --host 0.0.0.0 to share on the LAN)")
    return "\n".join(lines)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_server(settings: Settings) -> int:
    configure_logging(settings)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        print("Error: TLS needs both --tls-cert and --tls-key (DESKML_TLS_CERT, DESKML_TLS_KEY).", file=sys.stderr)
        return 1
    for tls_file in (settings.tls_cert, settings.tls_key):
        if tls_file is not None and not tls_file.expanduser().is_file():
            print(f"Error: TLS file {tls_file} does not exist (make one with `deskml tls selfsigned`).",
                  file=sys.stderr)
            return 1
    try:
        asyncio.run(redis_available(settings))
    except StartupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if port_in_use(settings.host, settings.port):
        print(
            f"Error: port {settings.port} on {settings.host} is already in use (another deskml or Ollama?). "
            f"Pick another with --port.",
            file=sys.stderr,
        )
        return 1
    try:
        preflight(settings)
    except (DatabaseError, InsecureBind) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if settings.upstreams_file is not None:
        try:
            load_config(settings.upstreams_file)
        except BadRequest as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            return 1

    def ready(services: Services) -> None:
        loaded = [m.name for m in services.manager.loaded()]
        lines = [banner(settings, loaded), *summary(services.auth, services.db, services.history),
                 *router_summary(services.router, settings)]
        print("\n".join(lines), file=sys.stderr, flush=True)

    app = create_app(settings, on_ready=ready)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
        # uvicorn's own cut-off is a backstop: the drain ends streams at shutdown_grace.
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 10, access_log=False, lifespan="on",
        log_config=None,  # keep deskml's handlers (JSON or text) for uvicorn's messages too
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or $FORWARDED_ALLOW_IPS); the app's
        # ClientAddress middleware believes it only from DESKML_TRUSTED_PROXIES.
        proxy_headers=False,
        ssl_certfile=str(settings.tls_cert.expanduser()) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key.expanduser()) if settings.tls_key else None,
    )
    server = DrainingServer(config, app, settings.shutdown_grace, settings.interrupt_grace)
    _exit_quietly_after_shutdown()
    server.run()
    return 0 if server.started else 1
