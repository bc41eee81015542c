"""Issue 13, "nothing may switch off the audit trail": text that JSON allows but UTF-8 cannot hold,
a history writer that survives any error and says so (/health, /metrics, doctor), a bounded buffer,
a shutdown that flushes and never fails, engine error text kept out of a content-free history,
private file permissions on the data dir, and a token budget that counts disconnected streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.services.db import HistoryRow
from tests.conftest import ServerProcess, make_settings

# valid JSON: an escaped lone surrogate, which no UTF-8 database or log can hold
SURROGATE_BODY = b'{"model": "smollm2", "prompt": "hi \\ud800", "stream": false, "options": {"num_predict": 2}}'


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rows(client: TestClient) -> list[HistoryRow]:
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        return list(session.scalars(sa.select(HistoryRow).order_by(HistoryRow.id)))


def test_a_lone_surrogate_is_recorded_and_the_writer_keeps_recording(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, history_flush_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        writer = client.app.state.history  # type: ignore[attr-defined]
        bad = client.post("/api/generate", content=SURROGATE_BODY, headers={"Content-Type": "application/json"})
        assert bad.status_code < 500
        wait_for(lambda: not writer.buffer, what="the first flush")
        assert client.get("/api/tags").status_code == 200
        wait_for(lambda: any(r.path == "/api/tags" for r in rows(client)), what="the next request to be recorded")
        recorded = {r.path: r for r in rows(client)}
        first = recorded["/api/generate"]
        assert first.status == bad.status_code
        stored = (first.input or "") + (first.error or "")
        assert first.input is None or "\ufffd" in first.input  # the surrogate itself became U+FFFD
        stored.encode("utf-8")
        assert writer.task_alive and writer.dropped == 0 and writer.write_errors == 0


# the token budget counts streams the client dropped ----------------------------------------------
def _read_then_drop(url: str, lines: int) -> int:
    """Stream a long generation, read `lines` NDJSON lines, then close the connection; returns lines read."""
    body = {"model": "smollm2", "prompt": "Count from 1 to 200, separated by commas:", "stream": True,
            "options": {"temperature": 0, "num_predict": 400}}
    read = 0
    with httpx.stream("POST", url + "/api/generate", json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                read += 1
            if read >= lines:
                break
    return read


def test_tokens_of_a_dropped_stream_count_against_the_hourly_budget(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"DESKML_RATE_LIMIT_TOKENS_PER_HOUR": "10"})
    try:
        server.wait_ready(60)
        assert _read_then_drop(server.url, 8) == 8
        assert _read_then_drop(server.url, 8) == 8  # 16 tokens received: over the budget of 10
        deadline = time.monotonic() + 15
        status = 0
        while time.monotonic() < deadline:
            status = httpx.get(server.url + "/api/tags", timeout=10).status_code
            if status == 429:
                break
            time.sleep(0.2)
        assert status == 429
        refused = httpx.post(server.url + "/api/generate", timeout=10, json={"model": "smollm2", "prompt": "hi"})
        assert refused.status_code == 429 and "generated tokens per hour" in refused.json()["error"]
    finally:
        server.stop()
