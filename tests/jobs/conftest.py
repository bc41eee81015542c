"""Fixtures for the job tests: an in-process app with the embedded executor and a short heartbeat,
and helpers that upload, submit and wait the way clients do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings

TERMINAL = {"SUCCESS", "FAILURE", "CANCELLED"}


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def jobs_client(tmp_path_factory: pytest.TempPathFactory, datasets_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), jobs_heartbeat_seconds=0.5, datasets_dir=datasets_dir,
                             max_upload_mb=5, num_parallel=4)
    with TestClient(create_app(settings)) as client:
        yield client


def upload(client: TestClient | httpx.Client, data: bytes, name: str = "data.csv", purpose: str = "train",
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/api/files", files={"file": (name, data)}, data={"purpose": purpose}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# A wait on a job is bounded by how long it goes without moving, not by how long it takes: on a
# loaded machine a batch of 24 model calls may take many minutes, while a stuck job stops moving at once.
# A job that keeps moving still gets at most this many times its timeout in all.
MOVING_CAP = 6


def job_motion(job: dict[str, Any]) -> tuple[Any, ...]:
    """What changes while a job moves on: its state, progress, message, attempt and runner."""
    return tuple(job.get(key) for key in ("state", "current", "total", "message", "status", "attempts", "worker"))


def wait_job(client: TestClient | httpx.Client, job_id: str, states: set[str] | None = None, timeout: float = 240,
             headers: dict[str, str] | None = None, settled: bool = True,
             until: Callable[[dict[str, Any]], bool] | None = None,
             explain: Callable[[], str] | None = None) -> dict[str, Any]:
    """Poll /api/jobs/{id} until its state is in `states` (default: any final state, with its runner
    stopped when `settled`) and `until(job)` holds. Fails when the job has not moved (see `job_motion`)
    for `timeout` seconds; `explain()` adds to the failure message (a worker's log)."""
    wanted = states or TERMINAL
    started = last_move = time.monotonic()
    motion: tuple[Any, ...] = ()
    while True:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        done = job["state"] in wanted and (not settled or job["state"] not in TERMINAL or job["finished_at"])
        if done and (until is None or until(job)):
            return job  # type: ignore[no-any-return]
        now = time.monotonic()
        if job_motion(job) != motion:
            motion, last_move = job_motion(job), now
        if now - last_move > timeout or now - started > MOVING_CAP * timeout:
            detail = explain() if explain is not None else ""
            raise AssertionError(f"job {job_id} still {job['state']} ({job['message']}, attempt {job['attempts']}, "
                                 f"{job['worker']}): unmoved for {now - last_move:.0f}s, "
                                 f"{now - started:.0f}s in all\n{detail}")
        time.sleep(0.2)


def poll_task(client: TestClient | httpx.Client, status_url: str, timeout: float = 300) -> list[dict[str, Any]]:
    """The seed's Dart `pollTask`: every 2 seconds GET the status, stop on SUCCESS or FAILURE (here: fail
    when the status has not moved for `timeout` seconds)."""
    seen: list[dict[str, Any]] = []
    started = last_move = time.monotonic()
    while True:
        time.sleep(2)
        response = client.get(status_url)
        assert response.status_code == 200, response.text  # Dio throws on anything else
        status = response.json()
        if not seen or job_motion(status) != job_motion(seen[-1]):
            last_move = time.monotonic()
        seen.append(status)
        if status["state"] in ("SUCCESS", "FAILURE"):
            return seen
        now = time.monotonic()
        assert now - last_move < timeout and now - started < MOVING_CAP * timeout, (
            f"task still {status}: unmoved for {now - last_move:.0f}s, {now - started:.0f}s in all")
