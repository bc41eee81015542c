"""`deskml jobs list|show|cancel|watch` (over HTTP, like the other client commands) and
`deskml worker` (a Celery worker that runs jobs from DESKML_BROKER_URL)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from deskml.cli.client import ApiError, Client, call, error_message, fail, server_client
from deskml.settings import Settings

jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs on the server: list, show, cancel, watch.")
console = Console()
err = Console(stderr=True)
TIMEOUT_S = 30.0  # jobs answer at once; `watch` reads its event stream with no read timeout


def _progress(job: dict[str, Any]) -> str:
    if not job["total"]:
        return "-"
    return f"{job['current']}/{job['total']} ({100 * job['current'] / job['total']:.0f}%)"


@jobs_app.command("list")
def list_jobs(
    state: str | None = typer.Option(None, help="PENDING, PROGRESS, SUCCESS, FAILURE or CANCELLED."),
    kind: str | None = typer.Option(None, help="train-text-classifier, train-image-classifier or batch."),
    limit: int = typer.Option(50, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as JSON."),
) -> None:
    """List jobs (yours; every job with an admin key)."""
    query = "&".join(f"{k}={v}" for k, v in {"state": state, "kind": kind, "limit": limit}.items() if v)
    jobs = call(server_client(TIMEOUT_S).get, f"/api/jobs?{query}")["jobs"]
    if as_json:
        console.print_json(json.dumps(jobs))
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    for name in ("KIND", "STATE", "PROGRESS"):
        table.add_column(name, no_wrap=True)
    table.add_column("MESSAGE", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("CREATED", no_wrap=True)
    for job in jobs:
        table.add_row(job["id"], job["kind"], job["state"], _progress(job), (job["message"] or "")[:60],
                      job["created_at"][:19].replace("T", " "))
    console.print(table)


@jobs_app.command()
def show(job_id: str) -> None:
    """Everything about one job, as JSON (its result included)."""
    console.print_json(json.dumps(call(server_client(TIMEOUT_S).get, f"/api/jobs/{job_id}")))


@jobs_app.command()
def cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    job = call(server_client(TIMEOUT_S).delete, f"/api/jobs/{job_id}", None)
    if job is None:
        job = call(server_client(TIMEOUT_S).get, f"/api/jobs/{job_id}")
    console.print(f"{job_id}: {job['state']}")


def _events(client: Client, job_id: str) -> Any:
    """The job's server-sent `progress` events as dicts, until `end`."""
    with client.http.stream("GET", f"/api/jobs/{job_id}/events", timeout=httpx.Timeout(None, connect=5)) as response:
        if response.status_code >= 400:
            response.read()
            raise ApiError(response.status_code, error_message(response))
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "progress":
                yield json.loads(line[6:])
            elif event in {"end", "error"} and line.startswith("data: "):
                return


@jobs_app.command()
def watch(job_id: str) -> None:
    """Follow a job with a progress bar and an ETA until it ends; exits 1 unless it succeeds."""
    client = server_client(TIMEOUT_S)
    last: dict[str, Any] | None = None
    columns = (TextColumn("[bold]{task.fields[state]:<9}"), BarColumn(), TaskProgressColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("", total=None, state="PENDING")
            for job in _events(client, job_id):
                last = job
                total = job["total"] or None
                bar.update(task, total=total, completed=job["current"], state=job["state"],
                           description=(job["message"] or "")[:60])
    except httpx.ConnectError:
        raise fail(f"could not connect to a deskml server at {client.url}.") from None
    except ApiError as exc:
        raise fail(exc.message) from None
    if last is None:
        raise typer.Exit(1)
    if last["state"] == "SUCCESS":
        summary = {k: last["result"][k] for k in ("model", "accuracy", "output_file_id", "request_counts")
                   if last["result"] and k in last["result"]}
        console.print(f"[green]SUCCESS[/green] {json.dumps(summary)}")
        return
    console.print(f"[red]{last['state']}[/red] {last.get('error') or last.get('message')}")
    raise typer.Exit(1)


def worker(
    concurrency: int = typer.Option(1, "--concurrency", "-c", help="Jobs this worker runs at once."),
    pool: str = typer.Option("threads", help="threads (one process, models loaded once), prefork or solo."),
    queue: str | None = typer.Option(None, help="Queue to consume (DESKML_JOBS_QUEUE, default deskml)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run background jobs from DESKML_BROKER_URL (Redis or RabbitMQ), on this or another machine.

    The worker needs the same DESKML_BROKER_URL and DESKML_DATABASE_URL as the server; it loads the
    models its jobs use itself."""
    overrides: dict[str, Any] = {"jobs_concurrency": concurrency, "log_level": log_level}
    if queue:
        overrides["jobs_queue"] = queue
    settings = Settings(**overrides)
    if not settings.broker_url:
        raise fail("DESKML_BROKER_URL is not set: a worker needs a broker, e.g. "
                   "redis://host:6379/0 or amqp://user:pass@host:5672//", 2)
    if pool not in {"threads", "prefork", "solo"}:
        raise fail("--pool must be threads, prefork or solo", 2)
    try:
        import celery  # noqa: F401
    except ImportError:
        raise fail("Celery is not installed: pip install 'deskml[jobs]'", 2) from None
    from deskml.api.openai.batch_lines import batch_handlers
    from deskml.runtime.jobs.celery_exec import make_worker_app
    from deskml.services.logging import configure_logging

    configure_logging(settings)
    app = make_worker_app(settings, batch_handlers())
    started = time.monotonic()
    celery_worker = app.Worker(
        concurrency=concurrency, pool=pool, queues=[settings.jobs_queue], loglevel=log_level.upper(),
        without_gossip=True, without_mingle=True, without_heartbeat=True, hostname=worker_name(),
    )
    celery_worker.start()
    code = int(getattr(celery_worker, "exitcode", 0) or 0)
    err.print(f"worker stopped after {time.monotonic() - started:.0f}s")
    sys.stdout.flush()
    raise typer.Exit(code)


def worker_name() -> str:
    """`deskml-PID@HOST` with the host written out: Celery expands `%h` in some places (log file names)
    but not in the name the worker reports to the broker and the jobs list."""
    return f"deskml-{os.getpid()}@{socket.gethostname()}"


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
    app.command()(worker)
