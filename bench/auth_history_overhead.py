"""Request overhead of authentication and request history, side by side in one run.

Starts deskml servers with the same model and sends them the same requests in turn (one at a time,
round robin, so only one works at any moment). Every other production service is off in all of
them (no cache, no metrics, no rate limits, log level warning), so the difference is auth + history:

  off           DESKML_AUTH=off, DESKML_HISTORY=false
  key           auth required, every request carries an API key (verified, then cached for 5 s)
  key+history   the same + request history with input/output in SQLite
  jwt+history   a login token (JWT signature checked on every request) + history

Two request kinds: GET /api/ps (no model work: the overhead shows whole) and POST /api/generate with
one generated token at temperature 0. Reports median and p90 latency and the ratio of medians to `off`.

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/auth_history_overhead.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import MODEL, ServerProcess

QUIET = {"DESKML_CACHE": "false", "DESKML_METRICS": "false", "DESKML_LOG_LEVEL": "warning",
         "DESKML_PRELOAD": "true", "DESKML_NUM_PARALLEL": "1"}
CONFIGS: dict[str, dict[str, str]] = {
    "off": {"DESKML_AUTH": "off", "DESKML_HISTORY": "false"},
    "key": {"DESKML_AUTH": "required", "DESKML_HISTORY": "false"},
    "key+history": {"DESKML_AUTH": "required", "DESKML_HISTORY": "true"},
    "jwt+history": {"DESKML_AUTH": "required", "DESKML_HISTORY": "true"},
}


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "DESKML_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], env=env, input=stdin,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def credentials(name: str, data_dir: Path) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    if name == "off":
        return {}
    if name == "jwt+history":
        cli(data_dir, "users", "create", "bench", "--password-stdin", stdin="bench-password\n")
        return {}
    return {"Authorization": "Bearer " + cli(data_dir, "keys", "create", "--name", "bench", "--scopes", "all")}


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
    root = Path(tempfile.mkdtemp(prefix="deskml-bench-auth-"))
    headers = {name: credentials(name, root / name) for name in CONFIGS}
    servers = {name: ServerProcess(root / name, env={**QUIET, **env}) for name, env in CONFIGS.items()}
    try:
        for server in servers.values():
            server.wait_ready(timeout=120)
        login = httpx.post(servers["jwt+history"].url + "/login",
                           json={"username": "bench", "password": "bench-password"}).json()
        headers["jwt+history"] = {"Authorization": "Bearer " + login["access_token"]}
        clients = {name: httpx.Client(base_url=s.url, timeout=60, headers=headers[name])
                   for name, s in servers.items()}
        results: dict[tuple[str, str], list[float]] = {}
        for client in clients.values():  # warm-up: model loaded, first-request paths taken
            for i in range(20):
                timed(client, "GET", "/api/ps")
                timed(client, "POST", "/api/generate", json={"model": MODEL, "prompt": f"warm {i}", "stream": False,
                                                               "options": {"temperature": 0, "num_predict": 1}})
        names = list(clients)
        for i in range(args.rounds):
            # Rotate who goes first, so no server always follows the same neighbour.
            order = names[i % len(names):] + names[: i % len(names)]
            for name in order:
                results.setdefault(("ps", name), []).append(timed(clients[name], "GET", "/api/ps"))
            for name in order:
                client = clients[name]
                body = {"model": MODEL, "prompt": f"Question {i}: what is {i} plus {i}?", "stream": False,
                        "options": {"temperature": 0, "num_predict": 1}}
                results.setdefault(("generate", name), []).append(timed(client, "POST", "/api/generate", json=body))
        print(f"{args.rounds} requests of each kind per server, interleaved; latency in ms")
        print(f"{'request':<10} {'server':<12} {'median':>8} {'p90':>8} {'median vs off':>14}")
        for kind in ("ps", "generate"):
            base = summary(results[(kind, "off")])[0]
            for name in CONFIGS:
                median, p90 = summary(results[(kind, name)])
                print(f"{kind:<10} {name:<12} {median * 1000:8.2f} {p90 * 1000:8.2f} {median / base:13.3f}x")
        time.sleep(1.5)  # let the history writers flush
        page = clients["key+history"].get("/api/history", params={"limit": 1000, "content": "false"})
        page.raise_for_status()
        print(f"key+history: the last {len(page.json()['items'])} requests are in its history")
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
