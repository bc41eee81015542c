"""`deskml pair`, `deskml discover` and `deskml doctor`: getting a phone onto this server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from deskml.settings import Settings

console = Console()
err = Console(stderr=True)

_MARKS = {"ok": "[green]ok  [/green]", "info": "[cyan]info[/cyan]", "warn": "[yellow]warn[/yellow]",
          "fail": "[red]FAIL[/red]"}


def _settings(host: str | None, port: int | None) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    return Settings(**overrides)


def pair(
    name: str | None = typer.Option(
        None, "--name", "-n", help="What the device is: names its API key (default: phone, or phone-2… if taken)."),
    scopes: str = typer.Option("inference", help="Scopes of the key: inference, models, admin or all."),
    host: str | None = typer.Option(None, help="The address the server binds (default DESKML_HOST)."),
    port: int | None = typer.Option(None, help="The server's port (default DESKML_PORT)."),
    url: list[str] = typer.Option([], "--url", help="Extra URL to offer first, e.g. https://desk.lan:11434."),
    png: Path | None = typer.Option(None, help="Also write the QR code as a PNG file."),
    svg: Path | None = typer.Option(None, help="Also write the QR code as an SVG file."),
    as_json: bool = typer.Option(False, "--json", help="Print only the payload JSON (no QR code)."),
    no_key: bool = typer.Option(False, "--no-key", help="Pair without a key (a server started with --insecure)."),
) -> None:
    """Create an API key for a device and show a QR code with the server's URLs, the key and the TLS fingerprint."""
    from deskml.cli.admin import _guard, _store
    from deskml.services import pairing
    from deskml.services.auth import parse_scopes

    settings = _settings(host, port)
    key: str | None = None
    if not no_key:
        store = _store()
        if name is None:
            name = pairing.free_key_name({k.name for k in store.list_keys()})
        info, key = _guard(store.create_key, name, _guard(parse_scopes, scopes), None)
        err.print(f"Created key [bold]{info.name}[/bold] (id {info.id}, scopes {', '.join(sorted(info.scopes))}); "
                  f"revoke it with: deskml keys revoke {info.id}")
    payload = pairing.build_payload(settings, key, url)
    if png is not None:
        png.write_bytes(pairing.qr_png(payload))
    if svg is not None:
        svg.write_text(pairing.qr_svg(payload), "utf-8")
    warning = pairing.reachability_warning(settings, payload)
    if as_json:
        if warning is None:
            print(pairing.payload_text(payload))
        else:  # the QR code never carries it; a script reading the JSON learns why there is no URL
            print(json.dumps({**payload.model_dump(), "warning": warning}, ensure_ascii=False))
        return
    sys.stdout.write(pairing.qr_terminal(payload))
    console.print("Scan this with the app. It carries:")
    for item in payload.urls or ["(no LAN URL)"]:
        console.print(f"  url: {item}")
    if payload.tls is not None:
        console.print(f"  TLS certificate SHA-256: {payload.tls.sha256}")
    if key:
        console.print("  the API key (shown only in the code)")
    if warning is not None:
        err.print(f"[yellow]Note:[/yellow] {warning['reason']}: {warning['fix']}.", markup=True, highlight=False)


def discover(
    timeout: float = typer.Option(3.0, help="Seconds to listen for answers."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List deskml servers on the local network (mDNS/DNS-SD, _deskml._tcp)."""
    from deskml.services.discovery import browse

    found = asyncio.run(browse(timeout))
    if as_json:
        print(json.dumps([{"name": f.name, "host": f.host, "port": f.port, "addresses": f.addresses,
                           "urls": f.urls, "txt": f.txt} for f in found], indent=2))
        return
    if not found:
        console.print(f"no deskml server answered within {timeout:g} s")
        return
    for server in found:
        auth = server.txt.get("auth", "?")
        console.print(f"{server.name}  {', '.join(server.urls)}  version {server.txt.get('version', '?')}, "
                      f"auth {auth}, tls {'yes' if server.txt.get('tls') == '1' else 'no'}", highlight=False)


def doctor(
    host: str | None = typer.Option(None, help="The address the server binds or will bind (default DESKML_HOST)."),
    port: int | None = typer.Option(None, help="The server's port (default DESKML_PORT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check why a phone could not reach this server, with the fix for each problem. Exits 1 if one would."""
    from deskml.runtime.doctor import diagnose

    report = asyncio.run(diagnose(_settings(host, port)))
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        for check in report.checks:
            console.print(f"{_MARKS[check.status]}  {check.name}: {check.message}", highlight=False, soft_wrap=True)
            if check.fix and check.status != "ok":
                console.print(f"      fix: {check.fix}", highlight=False, markup=False, soft_wrap=True)
        if report.lan_urls:
            console.print(f"\nPhone URL(s): {', '.join(report.lan_urls)}")
        console.print("\n" + ("[green]Nothing stops a phone from connecting.[/green]" if report.ok else
                              "[red]A phone could not connect: see FAIL above.[/red]"))
    raise typer.Exit(0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.command()(pair)
    app.command()(discover)
    app.command()(doctor)
