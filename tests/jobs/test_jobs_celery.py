"""Jobs on Celery: a deskml server and two real `deskml worker` processes (each with its own data
dir, as on separate machines) on Redis and on RabbitMQ, with jobs and progress in PostgreSQL.

Runs in CI (CI=true) against the local services. Each run uses its own queue name (and Redis
database 7, flushed afterwards; on RabbitMQ the queue and exchange are deleted afterwards) and
its own PostgreSQL schema.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.dbs import isolated, require_service
from tests.jobs.conftest import poll_task, upload, wait_job
from tests.jobs.jobdata import batch_jsonl, intents_csv

BROKERS = {
    "redis": "redis://127.0.0.1:6379/7",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


@dataclass
class Cluster:
    server: ServerProcess
    env: dict[str, str]
    root: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        data_dir = self.root / f"worker{index}"
        data_dir.mkdir()
        log = data_dir / "worker.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "deskml.cli.main", "worker", "--concurrency", "2"],
            env={**self.env, "DESKML_DATA_DIR": str(data_dir)}, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        self.logs.append(log)
        return proc

    def worker_logs(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-4000:]}" for log in self.logs)


def _cleanup_broker(kind: str, queue: str) -> None:
    if kind == "redis":
        import redis

        redis.Redis.from_url(BROKERS["redis"]).flushdb()
        return
    from kombu import Connection

    with Connection(BROKERS["rabbitmq"]) as conn:
        for what in ("queue_delete", "exchange_delete"):
            with contextlib.suppress(Exception):  # absent already
                getattr(conn.channel(), what)(queue)


@pytest.fixture(scope="module", params=list(BROKERS))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_service("postgresql")
    kind = str(request.param)
    root = tmp_path_factory.mktemp(f"celery-{kind}")
    queue = f"deskml-test-{uuid.uuid4().hex[:10]}"
    with isolated("postgresql", root) as database_url:
        env = {**os.environ, "DESKML_BROKER_URL": BROKERS[kind], "DESKML_DATABASE_URL": database_url,
               "DESKML_JOBS_QUEUE": queue, "DESKML_JOBS_HEARTBEAT_SECONDS": "1",
               # The default hour: a killed worker's job must move on through the server's re-send
               # (its heartbeat went silent), not through the Redis broker's redelivery.
               "DESKML_JOBS_VISIBILITY_TIMEOUT": "3600", "DESKML_NUM_CTX": "2048", "DESKML_NUM_PARALLEL": "4",
               "DESKML_LOG_FORMAT": "text"}
        (root / "server").mkdir()
        server = ServerProcess(root / "server", env=env)
        cluster = Cluster(server=server, env=env, root=root)
        try:
            server.wait_ready(60)
            cluster.start_worker()
            cluster.start_worker()
            yield cluster
        finally:
            for proc in cluster.workers:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            server.stop()
            _cleanup_broker(kind, queue)


def test_text_classifier_trained_by_a_worker_is_served_by_the_server(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.server.url, timeout=60) as client:
        file_id = upload(client, intents_csv(30))["id"]
        task = client.post("/api/train", json={"dataset": file_id, "config": {"name": "intent-celery"}}).json()
        assert task["success"] is True
        statuses = poll_task(client, task["status_url"], timeout=300)
        final = statuses[-1]
        assert final["state"] == "SUCCESS", (final, cluster.worker_logs())
        assert final["result"]["accuracy"] >= 0.9
        job = client.get(f"/api/jobs/{task['task_id']}").json()
        assert job["executor"] == "celery" and job["worker"].startswith("celery:")
        assert job["worker"].endswith(tuple(f":{p.pid}" for p in cluster.workers))  # ran in a worker, not the server
        reply = client.post("/api/classify", json={"model": "intent-celery", "input": "will it rain in Perth"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"][0]["label"] == "weather"


def test_a_worker_killed_mid_job_leaves_it_to_the_other_worker(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.server.url, timeout=60) as client:
        file_id = upload(client, batch_jsonl(24, max_tokens=40), "in.jsonl", purpose="batch")["id"]
        batch = client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"}).json()
        # Waits are on the job moving, not on the clock: on a loaded machine (CI with another CPU-heavy
        # process) the other worker took over within seconds but then ran the 24 lines at a minute each.
        job = wait_job(client, batch["id"], {"PROGRESS"}, settled=False, timeout=300,
                       until=lambda job: job["current"] >= 2, explain=cluster.worker_logs)
        victim_pid = int(job["worker"].rsplit(":", 1)[1])
        victim = next(p for p in cluster.workers if p.pid == victim_pid)
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(10)
        assert job["state"] == "PROGRESS" and job["attempts"] == 1

        final = wait_job(client, batch["id"], timeout=300, explain=cluster.worker_logs)
        assert final["state"] == "SUCCESS", (final, cluster.worker_logs())
        assert final["attempts"] == 2
        assert final["worker"] != job["worker"]
        seen = client.get(f"/v1/batches/{batch['id']}").json()
        assert seen["status"] == "completed" and seen["request_counts"]["completed"] == 24
        output = client.get(f"/v1/files/{seen['output_file_id']}/content").text.splitlines()
        assert sorted(line.split('"custom_id":"')[1].split('"')[0] for line in output) == sorted(
            f"req-{i}" for i in range(24))
        cluster.start_worker()  # back to two workers for whatever runs next
