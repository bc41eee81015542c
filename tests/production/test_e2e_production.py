"""Production layer against `deskml serve` subprocesses: graceful SIGTERM with streams in flight,
two processes sharing one Redis rate limit, HTTPS with a self-signed certificate, and a clear
start-up error when Redis is unreachable."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, ServerProcess, free_port

pytestmark = pytest.mark.e2e


def _read_stream(url: str, body: dict[str, Any], out: dict[str, Any], key: str) -> None:
    lines: list[dict[str, Any]] = []
    out[key] = lines
    try:
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=120) as response:
            out[key + ":status"] = response.status_code
            for line in response.iter_lines():
                if line.strip():
                    lines.append(json.loads(line))
        out[key + ":end"] = "closed"
    except httpx.HTTPError as exc:
        out[key + ":end"] = f"{type(exc).__name__}: {exc}"


def test_sigterm_ends_streams_in_flight_and_exits_0(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"DESKML_SHUTDOWN_GRACE": "3", "DESKML_PRELOAD": "true",
                                          "DESKML_CACHE": "false", "DESKML_LOG_FORMAT": "json"})
    try:
        server.wait_ready(timeout=60)
        results: dict[str, Any] = {}
        endless = {"model": MODEL, "prompt": "Write a very long story about the sea.",
                   "options": {"num_predict": 100000, "temperature": 0.7}}
        short = {"model": MODEL, "prompt": "Count from 1 to 10.", "options": {"num_predict": 40}}
        threads = [threading.Thread(target=_read_stream, args=(server.url, endless, results, "long"))]
        threads[0].start()
        deadline = time.monotonic() + 30
        while len(results.get("long", [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(results["long"]) >= 3, results
        server.proc.send_signal(signal.SIGTERM)
        # a request already in flight when the signal came still finishes within the grace period
        threads.append(threading.Thread(target=_read_stream, args=(server.url, short, results, "late")))
        threads[1].start()
        started = time.monotonic()
        code = server.proc.wait(timeout=30)
        took = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=10)
        assert code == 0, server.log()
        assert 2.5 < took < 25, took  # the grace period, then a prompt exit
        long = results["long"]
        assert results["long:status"] == 200 and results["long:end"] == "closed"
        assert all("error" not in line for line in long[:-1]) and len(long) > 3
        assert "shutting down" in long[-1]["error"]  # the stream ended with an error line, not a cut
        late = results.get("late:status")
        assert late in {503, None} or results["late"][-1].get("done") is True  # refused, or served whole
        log = server.log()
        assert "ending 1 request(s) still running" in log
        access = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        ended = [line for line in access
                 if line.get("logger") == "deskml.access" and line.get("path") == "/api/generate"]
        assert any(line.get("error") == "ended by shutdown" for line in ended)
    finally:
        server.stop()


def test_sigterm_lets_a_short_stream_finish(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"DESKML_SHUTDOWN_GRACE": "20", "DESKML_PRELOAD": "true",
                                          "DESKML_CACHE": "false"})
    try:
        server.wait_ready(timeout=60)
        results: dict[str, Any] = {}
        body = {"model": MODEL, "prompt": "Tell me about rivers.", "options": {"num_predict": 120}}
        thread = threading.Thread(target=_read_stream, args=(server.url, body, results, "s"))
        thread.start()
        while len(results.get("s", [])) < 2:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
        thread.join(timeout=10)
        assert results["s"][-1]["done"] is True and results["s"][-1]["eval_count"] > 2
        assert "error" not in results["s"][-1]
    finally:
        server.stop()


def test_two_processes_share_one_rate_limit_through_redis(tmp_path: Path, redis_url: str) -> None:
    env = {"DESKML_REDIS_URL": redis_url, "DESKML_RATE_LIMIT_REQUESTS_PER_MINUTE": "5"}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    one = ServerProcess(tmp_path / "one", env=env)
    two = ServerProcess(tmp_path / "two", env=env)
    try:
        one.wait_ready()
        two.wait_ready()  # wait_ready's probes hit /api/version, which is never limited
        statuses = []
        for i in range(8):
            server = one if i % 2 == 0 else two
            statuses.append(httpx.get(server.url + "/api/tags", timeout=10).status_code)
        assert statuses == [200] * 5 + [429] * 3
        refused = httpx.get(two.url + "/api/tags", timeout=10)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    finally:
        assert one.stop() == 0
        assert two.stop() == 0


def test_redis_unreachable_is_a_clear_startup_error(tmp_path: Path) -> None:
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_PORT": str(free_port()),
           "DESKML_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", "serve"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0 (DESKML_REDIS_URL)" in done.stderr
    assert "DESKML_REDIS_FALLBACK=memory" in done.stderr and "Traceback" not in done.stderr


def test_https_with_a_selfsigned_certificate(tmp_path: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "deskml.cli.main", "tls", "selfsigned", "--out", str(tmp_path / "tls"),
                           "--name", "deskml.lan"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "300"})
    assert made.returncode == 0, made.stderr
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    expected = ":".join(f"{b:02X}" for b in loaded.fingerprint(hashes.SHA256()))
    assert f"SHA-256 fingerprint: {expected}" in made.stdout
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "deskml.lan"} <= set(names.get_values_for_type(x509.DNSName))
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    again = subprocess.run([sys.executable, "-m", "deskml.cli.main", "tls", "selfsigned", "--out",
                            str(tmp_path / "tls")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--force" in again.stdout  # never overwrites silently

    (tmp_path / "data").mkdir()
    server = ServerProcess(tmp_path / "data", args=["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        url = f"https://127.0.0.1:{server.port}"
        trusted = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(url + "/api/version", verify=trusted, timeout=2)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise AssertionError(server.log()) from None
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["deskml"]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/api/version", timeout=5)  # the system trust store does not know it
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/api/version", timeout=5)  # no plain HTTP on that port
        assert "listening on https://" in server.log()
    finally:
        assert server.stop() == 0
