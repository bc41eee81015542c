"""The `deskml` command. `serve` runs the server; the other commands talk to it over HTTP."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from deskml import __version__
from deskml.cli.admin import register as register_admin_commands
from deskml.cli.client import ApiError, Client, ServerUnavailable, api_errors, call, fail, server_client
from deskml.cli.hub import register as register_hub_commands
from deskml.cli.jobs import register as register_jobs_commands
from deskml.cli.network import register as register_network_commands
from deskml.cli.tls import tls_app
from deskml.core.digest import digest_of_file
from deskml.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="deskml: local AI/ML inference server.")
app.add_typer(tls_app, name="tls")
register_admin_commands(app)
console = Console()
register_hub_commands(app)
register_jobs_commands(app)
register_network_commands(app)


def _version(value: bool) -> None:
    if value:
        console.print(f"deskml version {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", "-v", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """deskml: one local server for Ollama, OpenAI and ML-backend clients."""


def _size(num: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num < 1000:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1000
    return f"{num:.1f} TB"


def _ago(stamp: str) -> str:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    seconds = (datetime.now(UTC) - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if abs(seconds) >= size:
            count = int(abs(seconds) // size)
            return f"{count} {unit}{'s' if count != 1 else ''} {'ago' if seconds > 0 else 'from now'}"
    return "just now" if seconds >= 0 else "in a moment"


# serve -----------------------------------------------------------------------------------------
@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (DESKML_HOST)."),
    port: int | None = typer.Option(None, help="Port (DESKML_PORT, default 11434)."),
    data_dir: Path | None = typer.Option(None, help="Data directory (DESKML_DATA_DIR)."),
    preload: bool | None = typer.Option(None, "--preload/--no-preload", help="Load the default model at start."),
    num_parallel: int | None = typer.Option(None, help="Parallel slots per model (DESKML_NUM_PARALLEL)."),
    log_level: str | None = typer.Option(None, help="debug, info, warning or error."),
    tls_cert: Path | None = typer.Option(None, help="TLS certificate (PEM) to serve HTTPS (DESKML_TLS_CERT)."),
    tls_key: Path | None = typer.Option(None, help="TLS private key (PEM) (DESKML_TLS_KEY)."),
    insecure: bool | None = typer.Option(
        None, "--insecure", help="Serve a non-loopback address without any API key or user (DESKML_INSECURE)."),
    auth: str | None = typer.Option(None, help="auto, required, optional or off (DESKML_AUTH)."),
) -> None:
    """Start the server."""
    overrides: dict[str, Any] = {
        k: v for k, v in {
            "host": host, "port": port, "data_dir": data_dir, "preload": preload,
            "num_parallel": num_parallel, "log_level": log_level,
            "tls_cert": tls_cert, "tls_key": tls_key, "insecure": insecure, "auth": auth,
        }.items() if v is not None
    }
    settings = Settings(**overrides)
    from deskml.server import run_server

    raise typer.Exit(run_server(settings))


# model commands --------------------------------------------------------------------------------
@app.command("list")
def list_models() -> None:
    """List models on the server."""
    data = call(server_client().get, "/api/tags")
    table = Table("NAME", "ID", "SIZE", "KIND", "FORMAT", "MODIFIED", box=None, pad_edge=False)
    for m in data.get("models", []):
        table.add_row(m["name"], m["digest"][:12], _size(m["size"]), m.get("kind", "llm"),
                      (m.get("details") or {}).get("format", ""), _ago(m["modified_at"]))
    console.print(table)


def processor_cell(row: dict[str, Any]) -> str:
    """Ollama's PROCESSOR column; from size_vram / size when the server (an Ollama) sends no `processor`."""
    from deskml.engines.devices import processor

    size, vram = int(row.get("size") or 0), int(row.get("size_vram") or 0)
    text = row.get("processor") or processor(vram / size if size > 0 else 0.0)
    device = row.get("device")
    return f"{text} ({device})" if device and device != "cpu" else str(text)


@app.command()
def ps() -> None:
    """List loaded models and how busy they are."""
    data = call(server_client().get, "/api/ps")
    table = Table("NAME", "KIND", "ID", "SIZE", "PROCESSOR", "CONTEXT", "RUNNING", "QUEUED", "UNTIL",
                  box=None, pad_edge=False)
    for m in data.get("models", []):
        # one model can be loaded twice (chat and embedding): KIND tells the two instances apart
        table.add_row(m["name"], m.get("kind", "llm"), m["digest"][:12], _size(m["size"]), processor_cell(m),
                      str(m.get("context_length", "")),
                      f"{m.get('running', 0)}/{m.get('slots', '?')}", str(m.get("queued", 0)),
                      _ago(m["expires_at"]))
    console.print(table)


@app.command()
def show(
    model: str,
    modelfile: bool = typer.Option(False, "--modelfile", help="Print the Modelfile."),
    parameters: bool = typer.Option(False, "--parameters", help="Print the parameters."),
    template: bool = typer.Option(False, "--template", help="Print the template."),
    system: bool = typer.Option(False, "--system", help="Print the system message."),
) -> None:
    """Show information about a model."""
    data = call(server_client().post, "/api/show", {"model": model})
    for flag, key in ((modelfile, "modelfile"), (parameters, "parameters"), (template, "template"), (system, "system")):
        if flag:
            console.print(data.get(key, ""), markup=False, highlight=False)
            return
    details = data.get("details", {})
    info = data.get("model_info", {})
    arch = details.get("family", "")
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_row("kind", data.get("kind", "llm"))
    table.add_row("format", details.get("format", ""))
    table.add_row("architecture", arch)
    table.add_row("parameters", details.get("parameter_size", ""))
    table.add_row("context length", str(info.get(f"{arch}.context_length", "")))
    table.add_row("embedding length", str(info.get(f"{arch}.embedding_length", "")))
    table.add_row("quantization", details.get("quantization_level", ""))
    table.add_row("capabilities", ", ".join(data.get("capabilities", [])))
    console.print("  Model")
    console.print(table)
    if data.get("parameters"):
        console.print("\n  Parameters")
        console.print(data["parameters"], markup=False, highlight=False)


@app.command()
def create(
    model: str,
    file: Path = typer.Option(Path("Modelfile"), "--file", "-f", help="Path to the Modelfile."),
) -> None:
    """Create a model from a Modelfile."""
    from deskml.core.errors import BadRequest
    from deskml.runtime import modelfile as mf

    if not file.is_file():
        raise fail(f"no Modelfile at {file}")
    try:
        parsed = mf.parse(file.read_text("utf-8"))
    except BadRequest as exc:
        raise fail(exc.message) from None
    client = server_client(timeout=None)
    body: dict[str, Any] = {"model": model, "stream": True}
    source = Path(parsed.from_ or "").expanduser()
    if not source.is_absolute():
        source = (file.parent / source).resolve()
    if source.is_file():  # a local GGUF: upload it as a blob, as `ollama create` does
        digest = digest_of_file(source)
        console.print(f"gathering model components: {source.name}")
        if call(client.head, f"/api/blobs/{digest}") != 200:
            console.print(f"copying file {digest[:19]}… ({_size(source.stat().st_size)})")
            call(client.upload, f"/api/blobs/{digest}", str(source))
        body["files"] = {source.name: digest}
    else:
        body["from"] = parsed.from_
    for key, value in (("system", parsed.system), ("template", parsed.template)):
        if value is not None:
            body[key] = value
    if parsed.parameters:
        body["parameters"] = parsed.parameters
    if parsed.messages:
        body["messages"] = parsed.messages
    if parsed.license:
        body["license"] = parsed.license
    if parsed.draft is not None:
        body["draft"] = parsed.draft
    for item in call(lambda: list(client.stream("/api/create", body))):
        console.print(item.get("status", ""))


@app.command("cp")
def copy_model(source: str, destination: str) -> None:
    """Copy a model under a new name."""
    call(server_client().post, "/api/copy", {"source": source, "destination": destination})
    console.print(f"copied '{source}' to '{destination}'")


@app.command("rm")
def remove(models: list[str]) -> None:
    """Remove one or more models."""
    client = server_client()
    for model in models:
        call(client.delete, "/api/delete", {"model": model})
        console.print(f"deleted '{model}'")


@app.command()
def run(
    model: str,
    prompt: list[str] | None = typer.Argument(None, help="Prompt; omit it for an interactive chat."),
    system: str | None = typer.Option(None, help="System message."),
    fmt: str | None = typer.Option(None, "--format", help="'json' for JSON output."),
    keepalive: str | None = typer.Option(None, "--keepalive", help="How long the model stays loaded."),
) -> None:
    """Run a model: one prompt, or an interactive chat (/bye to leave)."""
    client = server_client(timeout=None)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    text = " ".join(prompt or [])
    if not sys.stdin.isatty() and not text:
        text = sys.stdin.read()
    call(client.post, "/api/generate", {"model": model, **({"keep_alive": keepalive} if keepalive else {})})
    if text:
        _chat_turn(client, model, [*history, {"role": "user", "content": text}], fmt, keepalive)
        return
    console.print("[dim]>>> Send a message (/? for help, /bye to leave)[/dim]")
    while True:
        try:
            line = console.input(">>> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line.strip():
            continue
        if line.strip() in {"/bye", "/exit", "/quit"}:
            return
        if line.strip() in {"/?", "/help"}:
            console.print("/bye  leave\n/clear  forget the conversation")
            continue
        if line.strip() == "/clear":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": line})
        reply = _chat_turn(client, model, history, fmt, keepalive)
        history.append({"role": "assistant", "content": reply})


def _chat_turn(client: Client, model: str, messages: list[dict[str, str]], fmt: str | None,
               keepalive: str | None) -> str:
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if fmt:
        body["format"] = fmt
    if keepalive:
        body["keep_alive"] = keepalive
    parts: list[str] = []
    try:
        with api_errors():
            for item in client.stream("/api/chat", body):
                piece = item.get("message", {}).get("content", "")
                parts.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    sys.stdout.write("\n\n")
    return "".join(parts)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmark deskml against llama-cpp-python and the seed's Flask+transformers (see bench/README.md).

    Options pass through: --systems, --concurrency, --per-client, --max-tokens, --python-peer, --out.
    """
    from deskml.bench.llm import main as run_bench

    run_bench(list(ctx.args))


@app.command()
def version() -> None:
    """Show client and server versions."""
    console.print(f"deskml version {__version__}")
    try:
        data = server_client().get("/api/version")
        console.print(f"server: deskml {data.get('deskml')} (Ollama API {data.get('version')})")
    except (ServerUnavailable, ApiError):
        console.print("server: not running")


def main() -> None:
    logging.captureWarnings(True)
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    main()
