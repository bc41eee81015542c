"""Fixtures for the job tests: an in-process app with the embedded executor and a short heartbeat,
and helpers that upload, submit and wait the way clients do."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


def wait_job(client: TestClient | httpx.Client, job_id: str, states: set[str] | None = None, timeout: float = 240,
             headers: dict[str, str] | None = None, settled: bool = True) -> dict[str, Any]:
    """Poll /api/jobs/{id} until its state is in `states` (default: any final state, with its runner
    stopped when `settled`)."""
    wanted = states or TERMINAL
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        done = job["state"] in wanted and (not settled or job["state"] not in TERMINAL or job["finished_at"])
        if done:
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} ({job['message']}) after {timeout}s"
        time.sleep(0.2)


def poll_task(client: TestClient | httpx.Client, status_url: str, timeout: float = 300) -> list[dict[str, Any]]:
    """The seed's Dart `pollTask`: every 2 seconds GET the status, stop on SUCCESS or FAILURE."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(2)
        response = client.get(status_url)
        assert response.status_code == 200, response.text  # Dio throws on anything else
        status = response.json()
        seen.append(status)
        if status["state"] in ("SUCCESS", "FAILURE"):
            return seen
        assert time.monotonic() < deadline, f"task still {status} after {timeout}s"
