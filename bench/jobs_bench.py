"""Background jobs, measured side by side in one run against one `deskml serve` (embedded executor):

1. Batch vs live: the same N chat requests (distinct prompts, temperature 0.7 so the response cache
   never answers) sent live with N in flight at once, then as one OpenAI batch (default: half the
   slots in flight), then as a batch allowed every slot (DESKML_JOBS_BATCH_PARALLEL = slots).
   Reports requests/s and the ratio to live.
2. Live latency while batch jobs run: the same short chat request one at a time, first on an idle
   server, then while 20 batch jobs queued at once work through their lines. Reports the median and
   p90 and the ratio to idle.
3. Classifier training times: text (all-minilm and wordllama embeddings) and image (EfficientNet-Lite0
   features) on generated datasets of two sizes, from /api/train to SUCCESS, with the job's own
   split of where the time went.

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/jobs_bench.py [--requests 32] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import MODEL, ServerProcess
from tests.jobs.jobdata import intents_csv, patterns_zip

SLOTS = 4


def chat_body(i: int, max_tokens: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Write one sentence about the number {i}."}],
            "max_tokens": max_tokens, "temperature": 0.7}


def batch_file(n: int, max_tokens: int, offset: int = 0) -> bytes:
    return "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": chat_body(offset + i, max_tokens)}) + "\n" for i in range(n)).encode()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in {"SUCCESS", "FAILURE", "CANCELLED"}:
            return job  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise TimeoutError(job_id)
        time.sleep(0.1)


def submit_batch(client: httpx.Client, data: bytes) -> str:
    file_id = client.post("/v1/files", files={"file": ("b.jsonl", data)}, data={"purpose": "batch"}).json()["id"]
    return str(client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                "completion_window": "24h"}).json()["id"])


async def live(url: str, n: int, max_tokens: int, offset: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=chat_body(offset + i, max_tokens))
                                         for i in range(n)))
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in replies)
    return elapsed


def batch_vs_live(server: ServerProcess, n: int, max_tokens: int, label: str) -> float:
    with httpx.Client(base_url=server.url, timeout=600) as client:
        started = time.perf_counter()
        job = wait_job(client, submit_batch(client, batch_file(n, max_tokens, offset=10_000)))
        elapsed = time.perf_counter() - started
    assert job["state"] == "SUCCESS" and job["result"]["request_counts"]["completed"] == n, job
    print(f"| {label} | {n} | {elapsed:.1f} | {n / elapsed:.2f} |", flush=True)
    return elapsed


def latencies(client: httpx.Client, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter()
        reply = client.post("/v1/chat/completions", json=chat_body(50_000 + i, 16),
                            headers={"X-Deskml-Cache": "off"})
        out.append(time.perf_counter() - started)
        assert reply.status_code == 200
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(out, format="PNG")
    return out.getvalue()


def training(server: ServerProcess) -> None:
    cases = [
        ("text, all-minilm", intents_csv(40), "data.csv", {"embedding": "all-minilm"}),
        ("text, all-minilm", intents_csv(400), "data.csv", {"embedding": "all-minilm"}),
        ("text, wordllama", intents_csv(400), "data.csv", {"embedding": "wordllama"}),
        ("image, efficientnet-lite0", patterns_zip(12), "p.zip", {}),
        ("image, efficientnet-lite0", patterns_zip(40), "p.zip", {}),
    ]
    print("\n| classifier | examples | wall s (submit to SUCCESS) | features s | fit s | holdout accuracy |")
    print("|---|---|---|---|---|---|")
    with httpx.Client(base_url=server.url, timeout=600) as client:
        # Load the frozen models first: the table shows training, not loading.
        client.post("/api/embed", json={"model": "all-minilm", "input": "warm up"}).raise_for_status()
        client.post("/api/embed", json={"model": "wordllama", "input": "warm up"}).raise_for_status()
        client.post("/api/vision/classify", files={"image": ("x.png", _png())}).raise_for_status()
        for i, (label, data, name, config) in enumerate(cases):
            file_id = client.post("/api/files", files={"file": (name, data)}, data={"purpose": "train"}).json()["id"]
            started = time.perf_counter()
            task = client.post("/api/train", json={"dataset": file_id, "config": {**config, "name": f"b{i}"}}).json()
            job = wait_job(client, task["task_id"])
            wall = time.perf_counter() - started
            result = job["result"]
            features = result.get("embed_seconds", result.get("features_seconds"))
            examples = result["train_size"] + result["test_size"]
            print(f"| {label} | {examples} | {wall:.2f} | {features:.2f} | {result['fit_seconds']:.3f} | "
                  f"{result['accuracy']:.3f} |", flush=True)


def live_latency(server: ServerProcess, rounds: int, tokens: int) -> None:
    with httpx.Client(base_url=server.url, timeout=600) as client:
        idle = latencies(client, rounds)
        ids = [submit_batch(client, batch_file(4, tokens, offset=20_000 + 10 * j)) for j in range(20)]
        busy = latencies(client, rounds)
        states = [wait_job(client, job_id)["state"] for job_id in ids]
    assert states == ["SUCCESS"] * 20, states
    print(f"\n## Live chat latency (max_tokens 16, one at a time, {rounds} requests)\n")
    print("| server | median s | p90 s |")
    print("|---|---|---|")
    print(f"| idle | {statistics.median(idle):.3f} | {p(idle, 0.9):.3f} |")
    print(f"| 20 batch jobs queued (4 lines each) | {statistics.median(busy):.3f} | {p(busy, 0.9):.3f} |")
    print(f"\nbusy/idle median latency: {statistics.median(busy) / statistics.median(idle):.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-parallel", type=int, default=0, help="DESKML_JOBS_BATCH_PARALLEL (0: default)")
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args()
    n, tokens = args.requests, args.max_tokens
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DESKML_NUM_PARALLEL": str(SLOTS), "DESKML_LOG_LEVEL": "warning", "DESKML_HISTORY": "false"}
        (Path(tmp) / "half").mkdir()
        server = ServerProcess(Path(tmp) / "half", env={**env, "DESKML_JOBS_BATCH_PARALLEL": str(args.batch_parallel)})
        server.wait_ready(60)
        (Path(tmp) / "full").mkdir()
        full = ServerProcess(Path(tmp) / "full", env={**env, "DESKML_JOBS_BATCH_PARALLEL": str(SLOTS)})
        full.wait_ready(60)
        try:
            asyncio.run(live(server.url, 4, tokens, 90_000))  # load the model on both
            asyncio.run(live(full.url, 4, tokens, 90_000))
            if args.latency_only:
                full.stop()
                live_latency(server, args.rounds, tokens)
                return
            print(f"## Batch vs live: {n} chat requests, max_tokens {tokens}, {SLOTS} slots\n")
            print("| how | requests | seconds | requests/s |")
            print("|---|---|---|---|")
            live_s = asyncio.run(live(server.url, n, tokens, 0))
            print(f"| live, {n} in flight | {n} | {live_s:.1f} | {n / live_s:.2f} |", flush=True)
            half_s = batch_vs_live(server, n, tokens, f"batch, {SLOTS // 2} in flight (default)")
            full_s = batch_vs_live(full, n, tokens, f"batch, {SLOTS} in flight")
            print(f"\nbatch/live throughput: default {live_s / half_s:.2f}, all slots {live_s / full_s:.2f}")
            full.stop()

            live_latency(server, args.rounds, tokens)
            training(server)
        finally:
            server.stop()
            full.stop()


if __name__ == "__main__":
    main()
