"""Request overhead of the production layer, side by side in one run.

Starts deskml servers on the same machine with the same model and sends them the same requests in
turn (one at a time, so only one works at any moment; the order rotates every round):

  off      no rate limits, no cache, no metrics, access log off (log level warning), no auth, no history
  traffic  rate limits (counted, never reached), cache (every request a miss that is stored),
           metrics, one JSON access line per request to a file
  all      traffic + auth middleware (anonymous on loopback) + request history (SQLite)

Two request kinds: GET /api/ps (no model work: the overhead shows whole) and POST /api/generate with
one generated token at temperature 0 and a prompt never seen before (a cache miss every time).
Reports the median and p90 latency per server and the ratio of medians to `off`.

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/production_overhead.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import MODEL, ServerProcess

CONFIGS: dict[str, dict[str, str]] = {
    "off": {"DESKML_CACHE": "false", "DESKML_METRICS": "false", "DESKML_LOG_LEVEL": "warning",
            "DESKML_AUTH": "off", "DESKML_HISTORY": "false"},
    "traffic": {"DESKML_CACHE": "true", "DESKML_METRICS": "true", "DESKML_LOG_LEVEL": "info",
                "DESKML_LOG_FORMAT": "json", "DESKML_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
                "DESKML_RATE_LIMIT_REQUESTS_PER_HOUR": "100000000", "DESKML_RATE_LIMIT_TOKENS_PER_HOUR": "100000000",
                "DESKML_AUTH": "off", "DESKML_HISTORY": "false"},
    "all": {"DESKML_CACHE": "true", "DESKML_METRICS": "true", "DESKML_LOG_LEVEL": "info",
            "DESKML_LOG_FORMAT": "json", "DESKML_RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
            "DESKML_RATE_LIMIT_REQUESTS_PER_HOUR": "100000000", "DESKML_RATE_LIMIT_TOKENS_PER_HOUR": "100000000",
            "DESKML_AUTH": "auto", "DESKML_HISTORY": "true"},
}


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> float:
    started = time.perf_counter()
    response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300, help="requests of each kind per server")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="deskml-bench-"))
    for name in CONFIGS:
        (root / name).mkdir()
    servers = {name: ServerProcess(root / name, env={**env, "DESKML_PRELOAD": "true", "DESKML_NUM_PARALLEL": "1",
                                                     "DESKML_LOG_FILE": str(root / name / "deskml.log")})
               for name, env in CONFIGS.items()}
    try:
        for server in servers.values():
            server.wait_ready(timeout=120)
        clients = {name: httpx.Client(base_url=s.url, timeout=60) for name, s in servers.items()}
        results: dict[tuple[str, str], list[float]] = {}
        for client in clients.values():  # warm-up: model loaded, first-request paths taken
            for i in range(20):
                timed(client, "GET", "/api/ps")
                timed(client, "POST", "/api/generate", json={"model": MODEL, "prompt": f"warm {i}", "stream": False,
                                                               "options": {"temperature": 0, "num_predict": 1}})
        names = list(clients)
        for i in range(args.rounds):
            # rotate who goes first each round, so no server always follows the same one
            order = names[i % len(names):] + names[: i % len(names)]
            for name in order:
                results.setdefault(("ps", name), []).append(timed(clients[name], "GET", "/api/ps"))
            for name in order:
                client = clients[name]
                body = {"model": MODEL, "prompt": f"Question {i}: what is {i} plus {i}?", "stream": False,
                        "options": {"temperature": 0, "num_predict": 1}}
                results.setdefault(("generate", name), []).append(timed(client, "POST", "/api/generate", json=body))
        misses = clients["traffic"].get("/metrics").text
        assert 'deskml_cache_requests_total{result="hit"} 0.0' in misses, "the bench must measure cache misses"
        print(f"{args.rounds} requests of each kind per server, interleaved; latency in ms")
        print(f"{'request':<10} {'server':<8} {'median':>8} {'p90':>8} {'median vs off':>14}")
        for kind in ("ps", "generate"):
            base = summary(results[(kind, "off")])[0]
            for name in CONFIGS:
                median, p90 = summary(results[(kind, name)])
                print(f"{kind:<10} {name:<8} {median * 1000:8.2f} {p90 * 1000:8.2f} {median / base:13.3f}x")
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
