"""Issue 13, "nothing may switch off the audit trail": text that JSON allows but UTF-8 cannot hold,
a history writer that survives any error and says so (/health, /metrics, doctor), a bounded buffer,
a shutdown that flushes and never fails, engine error text kept out of a content-free history,
private file permissions on the data dir, and a token budget that counts disconnected streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.services.db import HistoryRow
from tests.conftest import make_settings

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
