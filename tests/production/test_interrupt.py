"""Ctrl-C against a real `deskml serve`: the first SIGINT ends a running stream with an error line
after the short interrupt grace (not the 30 s SIGTERM grace), a second one exits at once with the
app's shutdown run and no traceback. The model loads lazily, after uvicorn installed its handlers,
so these also prove the handlers survive llama.cpp's own (it installs some when it loads)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, ServerProcess

pytestmark = pytest.mark.e2e

ENDLESS = {"model": MODEL, "prompt": "Write a very long story about the sea.",
           "options": {"num_predict": 100000, "temperature": 0.7}}


def _stream(url: str, out: dict[str, Any]) -> None:
    lines: list[dict[str, Any]] = []
    out["lines"] = lines
    try:
        with httpx.stream("POST", url + "/api/generate", json=ENDLESS, timeout=120) as response:
            out["status"] = response.status_code
            for line in response.iter_lines():
                if line.strip():
                    lines.append(json.loads(line))
        out["end"] = "closed"
    except httpx.HTTPError as exc:
        out["end"] = f"{type(exc).__name__}: {exc}"


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_streaming(tmp_path: Path, env: dict[str, str]) -> tuple[ServerProcess, dict[str, Any], threading.Thread]:
    # DESKML_SHUTDOWN_GRACE stays at its 30 s default: Ctrl-C must not wait for it
    server = ServerProcess(tmp_path, env={"DESKML_CACHE": "false", **env})
    server.wait_ready(timeout=60)
    results: dict[str, Any] = {}
    thread = threading.Thread(target=_stream, args=(server.url, results))
    thread.start()
    _wait_for(lambda: len(results.get("lines", [])) >= 3 or "end" in results, 90, "the stream to begin")
    assert len(results["lines"]) >= 3, results
    return server, results, thread


def test_ctrl_c_ends_a_running_stream_within_seconds(tmp_path: Path) -> None:
    server, results, thread = _start_streaming(tmp_path, {})
    try:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        code = server.proc.wait(timeout=60)
        took = time.monotonic() - started
        thread.join(timeout=10)
        assert code == 0, server.log()
        assert took < 10, took  # the 2 s interrupt grace and a prompt exit, not the 30 s SIGTERM grace
        lines = results["lines"]
        assert results["status"] == 200 and results["end"] == "closed"
        assert all("error" not in line for line in lines[:-1])
        assert "shutting down" in lines[-1]["error"]  # told, not cut
        log = server.log()
        assert "press it again to stop at once" in log and "get 2s to finish" in log
        assert "Application shutdown complete" in log and "Traceback" not in log
    finally:
        server.stop()


def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path: Path) -> None:
    server, results, thread = _start_streaming(tmp_path, {"DESKML_INTERRUPT_GRACE": "60"})
    try:
        server.proc.send_signal(signal.SIGINT)
        _wait_for(lambda: "press it again" in server.log(), 30, "the first Ctrl-C to be noted")
        assert server.proc.poll() is None  # waiting on the 60 s grace
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        code = server.proc.wait(timeout=60)
        took = time.monotonic() - started
        thread.join(timeout=10)
        log = server.log()
        assert code == 0, log
        assert took < 5, took
        assert "shutting down" in results["lines"][-1]["error"] and results["end"] == "closed"
        assert "Traceback" not in log and "CancelledError" not in log, log
        assert "Application shutdown complete" in log  # jobs handed back, history flushed, models unloaded
    finally:
        server.stop()
