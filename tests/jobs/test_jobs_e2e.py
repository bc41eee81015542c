"""Jobs against a `deskml serve` subprocess: OpenAI batches through the official `openai` client, the
`deskml jobs` CLI, a server killed mid-job and started again (embedded executor), and owners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from deskml.runtime.jobs.store import STALE_HEARTBEATS
from tests.conftest import ServerProcess
from tests.jobs.conftest import MOVING_CAP, upload, wait_job
from tests.jobs.jobdata import batch_jsonl, intents_csv

pytestmark = pytest.mark.e2e

JOB_ENV = {"DESKML_JOBS_HEARTBEAT_SECONDS": "0.5", "DESKML_NUM_PARALLEL": "4"}


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("jobs-server"), env=JOB_ENV)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _wait_batch(client: OpenAI, batch_id: str, timeout: float = 300) -> object:
    """Until the batch ends; fails when it has not moved (status, lines done) for `timeout` seconds, since
    a loaded machine runs fifty lines slowly but a stuck batch stops moving (MOVING_CAP bounds the whole)."""
    started = last_move = time.monotonic()
    motion: tuple[object, ...] = ()
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in {"completed", "failed", "cancelled", "expired"}:
            return batch
        now = time.monotonic()
        counts = batch.request_counts
        moved = (batch.status, counts.completed, counts.failed) if counts is not None else (batch.status,)
        if moved != motion:
            motion, last_move = moved, now
        assert now - last_move < timeout and now - started < MOVING_CAP * timeout, f"batch still {batch.status}"
        time.sleep(0.5)


def test_fifty_line_chat_batch_through_the_openai_client(jobs_server: ServerProcess, tmp_path: Path) -> None:
    client = OpenAI(base_url=jobs_server.url + "/v1", api_key="unused")
    path = tmp_path / "requests.jsonl"
    path.write_bytes(batch_jsonl(50, max_tokens=8))
    with path.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == path.stat().st_size
    assert uploaded.filename == "requests.jsonl"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"purpose": "test"})
    assert batch.id.startswith("batch_") and batch.status in {"validating", "in_progress"}
    done = _wait_batch(client, batch.id)
    assert done.status == "completed", done  # type: ignore[attr-defined]
    assert done.request_counts.total == 50 and done.request_counts.completed == 50  # type: ignore[attr-defined]
    assert done.request_counts.failed == 0 and done.error_file_id is None  # type: ignore[attr-defined]
    assert done.metadata == {"purpose": "test"}  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]  # type: ignore[attr-defined]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(50))
    for line in lines:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["usage"]["completion_tokens"] <= 8
    assert batch.id in {b.id for b in client.batches.list(limit=10).data}
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"  # type: ignore[attr-defined]


def test_embedding_batch_and_failed_lines_in_the_error_file(jobs_server: ServerProcess, tmp_path: Path) -> None:
    client = OpenAI(base_url=jobs_server.url + "/v1", api_key="unused")
    rows = [json.loads(line) for line in batch_jsonl(4, model="all-minilm", endpoint="/v1/embeddings").splitlines()]
    rows[2]["body"]["model"] = "no-such-model"
    rows[3]["body"]["input"] = ""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    uploaded = client.files.create(file=("emb.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    done = _wait_batch(client, batch.id)
    assert done.status == "completed"  # type: ignore[attr-defined]
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)  # type: ignore[attr-defined]
    good = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]  # type: ignore[attr-defined]
    assert [line["custom_id"] for line in good] == ["req-0", "req-1"]
    assert len(good[0]["response"]["body"]["data"][0]["embedding"]) == 384
    bad = {json.loads(line)["custom_id"]: json.loads(line) for line in
           client.files.content(done.error_file_id).text.splitlines()}  # type: ignore[attr-defined]
    assert bad["req-2"]["response"]["status_code"] == 404
    assert "no-such-model" in bad["req-2"]["response"]["body"]["error"]["message"]
    assert bad["req-3"]["response"]["status_code"] == 400
    # A batch whose endpoint does not match its lines, and a file that is not a batch file: 400s.
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="batch endpoint"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(BadRequestError, match="line 1 is not valid JSON"):
        client.files.create(file=("bad.jsonl", b"{nope\n"), purpose="batch")


def test_cancel_a_batch_with_the_openai_client_and_the_jobs_cli(jobs_server: ServerProcess, tmp_path: Path) -> None:
    client = OpenAI(base_url=jobs_server.url + "/v1", api_key="unused")
    uploaded = client.files.create(file=("long.jsonl", batch_jsonl(40, max_tokens=48)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    env = {**os.environ, "DESKML_URL": jobs_server.url, "COLUMNS": "200"}
    cli = [sys.executable, "-m", "deskml.cli.main", "jobs"]
    listed = subprocess.run([*cli, "list", "--kind", "batch"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and batch.id in listed.stdout
    with httpx.Client(base_url=jobs_server.url) as http:
        wait_job(http, batch.id, {"PROGRESS"}, settled=False)
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in {"cancelling", "cancelled"}
    assert _wait_batch(client, batch.id).status == "cancelled"  # type: ignore[attr-defined]
    shown = subprocess.run([*cli, "show", batch.id], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "CANCELLED"
    watched = subprocess.run([*cli, "watch", batch.id], env=env, capture_output=True, text=True, timeout=60)
    assert watched.returncode == 1 and "CANCELLED" in watched.stdout


def test_jobs_watch_draws_a_progress_bar_until_success(jobs_server: ServerProcess) -> None:
    with httpx.Client(base_url=jobs_server.url, timeout=60) as http:
        file_id = upload(http, intents_csv(20))["id"]
        task = http.post("/api/train", json={"dataset": file_id, "config": {"name": "watched"}}).json()
    env = {**os.environ, "DESKML_URL": jobs_server.url, "COLUMNS": "120"}
    watched = subprocess.run([sys.executable, "-m", "deskml.cli.main", "jobs", "watch", task["task_id"]], env=env,
                             capture_output=True, text=True, timeout=300)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "SUCCESS" in watched.stdout and '"model": "watched"' in watched.stdout
    assert "100%" in watched.stdout and "ETA" in watched.stdout
    cancel = subprocess.run([sys.executable, "-m", "deskml.cli.main", "jobs", "cancel", "nope"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 1 and "no job" in cancel.stderr


@pytest.mark.parametrize("attempts", [2, 1])
def test_server_killed_mid_job_then_restarted_finishes_or_fails_with_a_reason(tmp_path: Path, attempts: int) -> None:
    env = {**JOB_ENV, "DESKML_JOBS_MAX_ATTEMPTS": str(attempts)}
    first = ServerProcess(tmp_path, env=env)
    first.wait_ready()
    with httpx.Client(base_url=first.url, timeout=60) as http:
        file_id = upload(http, batch_jsonl(16, max_tokens=32), "in.jsonl", purpose="batch")["id"]
        batch_id = http.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                  "completion_window": "24h"}).json()["id"]
        queued_id = http.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                   "completion_window": "24h"}).json()["id"]
        job = wait_job(http, batch_id, {"PROGRESS"}, settled=False)
        assert http.get(f"/api/jobs/{queued_id}").json()["state"] == "PENDING"  # one job at a time
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop()

    second = ServerProcess(tmp_path, env=env)
    try:
        second.wait_ready()
        with httpx.Client(base_url=second.url, timeout=60) as http:
            started = time.monotonic()
            final = wait_job(http, batch_id, timeout=300)
            if attempts == 2:
                assert final["state"] == "SUCCESS", final
                assert final["attempts"] == 2 and final["worker"] != job["worker"]
                # Taken over only once its heartbeat went stale, not while it might still be running.
                assert time.monotonic() - started >= 0.5 * (STALE_HEARTBEATS - 1) * 0.5
            else:
                assert final["state"] == "FAILURE", final
                assert "stopped during attempt 1 of 1" in final["error"] and job["worker"] in final["error"]
            # The job that was queued when the server died runs after the restart.
            assert wait_job(http, queued_id, timeout=300)["state"] == "SUCCESS"
    finally:
        second.stop()
