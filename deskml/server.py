"""Run the app under uvicorn: port check, start-up banner, graceful shutdown."""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI

from deskml import __version__
from deskml.app import create_app
from deskml.services.netinfo import is_loopback, lan_addresses, port_in_use
from deskml.settings import Settings

log = logging.getLogger("deskml")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def banner(settings: Settings, loaded: list[str]) -> str:
    bind = settings.host
    shown = f"[{bind}]" if ":" in bind else bind
    lines = [f"deskml {__version__} listening on http://{shown}:{settings.port}"]
    lines.append(f"  data dir: {settings.data_dir}")
    lines.append(f"  default model: {settings.default_model}")
    lines.append(f"  loaded: {', '.join(loaded) or 'none yet (models load on first use)'}")
    lines.append("  APIs: Ollama /api/*, OpenAI /v1/*")
    if not is_loopback(bind):
        urls = [f"http://{ip}:{settings.port}" for ip in lan_addresses()]
        lines.append("  from a phone on this network use: " + (", ".join(urls) or "(no LAN address found)"))
    else:
        lines.append("  loopback only: other devices cannot connect (use --host 0.0.0.0 to share on the LAN)")
    return "\n".join(lines)


def run_server(settings: Settings) -> int:
    configure_logging(settings.log_level)
    if port_in_use(settings.host, settings.port):
        print(
            f"Error: port {settings.port} on {settings.host} is already in use (another deskml or Ollama?). "
            f"Pick another with --port.",
            file=sys.stderr,
        )
        return 1
    def ready(app: FastAPI) -> None:
        loaded = [m.name for m in app.state.manager.loaded()]
        print(banner(settings, loaded), file=sys.stderr, flush=True)

    app = create_app(settings, on_ready=ready)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30, access_log=False, lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0
