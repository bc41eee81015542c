"""The heartbeat keeper (runtime/jobs/lease.py): a runner frozen in one long C call (llama.cpp's model
load holds the GIL throughout) keeps its job, a runner that ended or died lets it go stale as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from deskml.runtime.jobs.lease import LeaseKeeper
from deskml.runtime.jobs.store import JobInfo, JobStore
from deskml.services.db import Database

PERIOD = 0.2  # seconds between heartbeats: stale after 4 periods


def _running_job(tmp_path: Path) -> tuple[JobStore, str]:
    db = Database(f"sqlite:///{tmp_path / 'deskml.db'}")
    db.migrate()
    store = JobStore(db, PERIOD)
    job = store.create("batch", "anonymous", {}, "celery")
    assert store.claim(job.id, "runner")[0] == "run"
    return store, job.id


def _job(store: JobStore, job_id: str) -> JobInfo:
    job = store.get(job_id)
    assert job is not None
    return job


def _wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(PERIOD / 2)


def test_a_frozen_runner_keeps_its_job_and_a_closed_one_lets_it_go(tmp_path: Path) -> None:
    store, job_id = _running_job(tmp_path)
    claimed_at: datetime | None = _job(store, job_id).heartbeat_at
    keeper = LeaseKeeper(store.db.url, job_id, "runner", PERIOD)
    keeper.start()
    try:
        _wait(lambda: _job(store, job_id).heartbeat_at != claimed_at, "the keeper's first heartbeat")
        # The runner says nothing (its loop is frozen) for 3 stale periods: the keeper holds the job.
        deadline = time.monotonic() + 3 * 4 * PERIOD
        while time.monotonic() < deadline:
            outcome, job = store.claim(job_id, "other")
            assert outcome == "busy" and job is not None and job.worker == "runner", outcome
            time.sleep(PERIOD)
    finally:
        keeper.close()  # the run ended, or its process died (the pipe closes either way)
    _wait(lambda: store.claim(job_id, "other")[0] == "run", "the job going stale")
    job = _job(store, job_id)
    assert job.worker == "other" and job.attempts == 2


def test_a_cancelled_job_is_held_while_its_runner_winds_down_then_let_go(tmp_path: Path) -> None:
    store, job_id = _running_job(tmp_path)
    keeper = LeaseKeeper(store.db.url, job_id, "runner", PERIOD)
    keeper.start()
    try:
        store.cancel(job_id)  # the runner's own heartbeat stops here; it still saves what it made
        cancelled_at = _job(store, job_id).heartbeat_at
        _wait(lambda: _job(store, job_id).heartbeat_at != cancelled_at, "a heartbeat after the cancel")
        time.sleep(3 * 4 * PERIOD)
        assert job_id not in store.abandoned("celery")  # no scan closes it under its runner
        assert not keeper.stopped
        store.settle_cancelled(job_id, "runner", {"output_file_id": "file-x"})
        _wait(lambda: keeper.stopped, "the keeper stopping once the job is closed")
    finally:
        keeper.close()
    job = _job(store, job_id)
    assert job.state == "CANCELLED" and job.finished_at is not None and job.result == {"output_file_id": "file-x"}
