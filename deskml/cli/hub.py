"""Model hub commands: pull (with progress), search, du, export and import.

`pull` asks the running server (like `ollama pull`); `search`, `du`, `export` and `import` work on
the data directory directly, so they also work on an offline machine with no server running (a
running server sees imported models at once: it reads the store on every request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from deskml.cli.client import api_errors, fail, server_client
from deskml.core.errors import DeskmlError
from deskml.settings import Settings

console = Console()
err = Console(stderr=True)


def _size(num: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(num) < 1000:
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1000
    return f"{num:.1f} TB"


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def pull(model: str = typer.Argument(..., help="Catalog name, hf.co/OWNER/REPO:QUANT, hf://…, URL, pypi:… or path.")
         ) -> None:
    """Pull a model, showing progress with speed and time left."""
    client = server_client(timeout=None)
    tasks: dict[str, TaskID] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    try:
        with api_errors(), Progress(*columns, console=console, transient=False) as progress:
            for item in client.stream("/api/pull", {"model": model, "stream": True}):
                _show(progress, tasks, item)
    except KeyboardInterrupt:
        err.print("interrupted: pull again to resume where it stopped")
        raise typer.Exit(130) from None


def _show(progress: Progress, tasks: dict[str, TaskID], item: dict[str, Any]) -> None:
    status = str(item.get("status", ""))
    key = item.get("digest") or ""
    if item.get("total") is not None and status.startswith("pulling "):
        key = key or status
        total = int(item.get("total") or 0) or None
        if key not in tasks:
            tasks[key] = progress.add_task(status, total=total)
        progress.update(tasks[key], total=total, completed=int(item.get("completed") or 0))
    elif status:
        progress.console.print(status, highlight=False)


def search(word: list[str] | None = typer.Argument(None, help="Words to look for (name, family, kind, ...)."),
           data_dir: Path | None = typer.Option(None, help="Data directory (DESKML_DATA_DIR).")) -> None:
    """Search the model catalog."""
    from deskml.runtime.hub.catalog import Catalog
    from deskml.runtime.model_store import ModelStore
    from deskml.runtime.registry import Registry

    settings = _settings(data_dir)
    try:
        catalog = Catalog.load(settings.catalog_file)
    except DeskmlError as exc:
        raise fail(exc.message) from None
    found = catalog.search(" ".join(word or []))
    if not found:
        raise fail(f"nothing in the catalog matches {' '.join(word or [])!r}")
    registry = Registry(ModelStore.for_settings(settings))
    table = Table(box=None, pad_edge=False)
    table.add_column("NAME", no_wrap=True)
    for column in ("KIND", "FAMILY", "PARAMS", "SIZE", "MIN RAM", "CAPABILITIES", "HERE"):
        table.add_column(column)
    for entry in found:
        here = "yes" if registry.find(entry.name) is not None else ""
        table.add_row(entry.name, entry.kind, entry.family, entry.parameter_size, _size(entry.size),
                      _size(entry.min_ram_mb * 1e6), ",".join(entry.capabilities), here)
    console.print(table)


def du(data_dir: Path | None = typer.Option(None, help="Data directory (DESKML_DATA_DIR).")) -> None:
    """Show the disk space models use (shared blobs counted once)."""
    from deskml.runtime.model_store import ModelStore
    from deskml.runtime.registry import Registry

    usage = Registry(ModelStore.for_settings(_settings(data_dir))).usage()
    table = Table("NAME", "KIND", "SIZE", "SHARED", "WHERE", box=None, pad_edge=False)
    for model in sorted(usage.models, key=lambda m: -m.size):
        table.add_row(model.name, model.kind, _size(model.size), _size(model.shared) if model.shared else "",
                      f"package {model.package}" if model.package else "store")
    console.print(table)
    console.print(f"\nstore      {usage.root}")
    console.print(f"on disk    {_size(usage.blob_bytes)} in {usage.blobs} blobs")
    packaged = [m for m in usage.models if m.package]
    if packaged:
        names = ", ".join(sorted({m.package or "" for m in packaged}))
        console.print(f"packages   {_size(usage.package_bytes)} in installed packages ({names}; "
                      f"`pip uninstall` removes them)")
    console.print(f"unused     {_size(usage.unreferenced_bytes)} (freed by `deskml rm`)")
    console.print(f"partial    {_size(usage.partial_bytes)} (unfinished pulls, resumed by the next pull)")
    console.print(f"free disk  {_size(usage.free_bytes)}")


def export(models: list[str] = typer.Argument(..., help="Models to export."),
           output: Path = typer.Option(..., "--output", "-o", help="Tar file to write."),
           data_dir: Path | None = typer.Option(None, help="Data directory (DESKML_DATA_DIR).")) -> None:
    """Export models with their blobs to a tar file, for a machine without internet."""
    from deskml.runtime.hub.transfer import export_models
    from deskml.runtime.model_store import ModelStore
    from deskml.runtime.registry import Registry

    registry = Registry(ModelStore.for_settings(_settings(data_dir)))
    try:
        written = export_models(registry, models, output,
                                lambda digest, size: console.print(f"adding {digest[7:19]} ({_size(size)})"))
    except DeskmlError as exc:
        raise fail(exc.message) from None
    console.print(f"exported {', '.join(written)} to {output} ({_size(output.stat().st_size)})")


def import_(source: Path = typer.Argument(..., help="Tar file written by `deskml export`."),
            data_dir: Path | None = typer.Option(None, help="Data directory (DESKML_DATA_DIR).")) -> None:
    """Import models from an export tar, verifying every blob's sha256."""
    from deskml.runtime.hub.transfer import import_models
    from deskml.runtime.model_store import ModelStore

    store = ModelStore.for_settings(_settings(data_dir))
    try:
        imported = import_models(store, source,
                                 lambda digest, size: console.print(f"verifying {digest[7:19]} ({_size(size)})"))
    except DeskmlError as exc:
        raise fail(exc.message) from None
    console.print(f"imported {', '.join(imported)}")


def register(app: typer.Typer) -> None:
    app.command()(pull)
    app.command()(search)
    app.command()(du)
    app.command()(export)
    app.command("import")(import_)
