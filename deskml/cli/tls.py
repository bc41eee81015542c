"""`deskml tls selfsigned`: make a certificate for serving HTTPS on the LAN."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from deskml.settings import Settings

tls_app = typer.Typer(no_args_is_help=True, help="TLS certificates for HTTPS.")
console = Console()


@tls_app.command("selfsigned")
def selfsigned(
    out: Path | None = typer.Option(None, help="Directory for cert.pem and key.pem (default: <data dir>/tls)."),
    name: list[str] = typer.Option([], "--name", help="Extra host name or IP to include (repeatable)."),
    days: int = typer.Option(825, help="Validity in days."),
    force: bool = typer.Option(False, "--force", help="Replace an existing certificate."),
) -> None:
    """Create a self-signed certificate for localhost and this machine's LAN addresses."""
    from deskml.services.tls import make_selfsigned

    directory = out or Settings().data_dir / "tls"
    try:
        made = make_selfsigned(directory, name, days=days, overwrite=force)
    except FileExistsError as exc:
        console.print(f"[red]Error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"certificate: {made.cert}\nprivate key: {made.key}")
    console.print(f"valid for: {', '.join(made.names)}")
    console.print(f"SHA-256 fingerprint: {made.fingerprint}")
    console.print(f"serve with: deskml serve --host 0.0.0.0 --tls-cert {made.cert} --tls-key {made.key}")
