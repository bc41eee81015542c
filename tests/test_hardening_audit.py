"""Issue 13, "nothing may switch off the audit trail": text that JSON allows but UTF-8 cannot hold,
a history writer that survives any error and says so (/health, /metrics, doctor), a bounded buffer,
a shutdown that flushes and never fails, engine error text kept out of a content-free history,
private file permissions on the data dir, and a token budget that counts disconnected streams."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.context import RequestRecord
from deskml.core.types import Done, EngineRequest, Event
from deskml.engines.llama_cpp import engine as llama_cpp
from deskml.services import history as history_module
from deskml.services.db import HistoryRow
from deskml.services.history import HistoryWriter, _Pending, to_row
from deskml.services.logging import JsonFormatter, TextFormatter
from tests.conftest import ServerProcess, make_settings, services_of
from tests.test_history import wait_for

# valid JSON: an escaped lone surrogate, which no UTF-8 database or log can hold
SURROGATE_BODY = b'{"model": "smollm2", "prompt": "hi \\ud800", "stream": false, "options": {"num_predict": 2}}'


def rows(client: TestClient) -> list[HistoryRow]:
    db = services_of(client.app).db
    with db.session() as session:
        return list(session.scalars(sa.select(HistoryRow).order_by(HistoryRow.id)))


def test_a_lone_surrogate_is_recorded_and_the_writer_keeps_recording(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, history_flush_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        writer = services_of(client.app).history
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


@pytest.mark.slow  # a server subprocess
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


# the writer survives anything, and says so ------------------------------------------------------
def _record(request_id: str, **fields: object) -> RequestRecord:
    record = RequestRecord(request_id=request_id, method="POST", path="/api/generate", dialect="ollama", status=200)
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def test_every_text_field_is_made_storable() -> None:
    record = _record("r\ud800", model="m\ud800", error="e\udfff", client="c\ud800", input={"prompt": "p\ud800"},
                     output={"content": "\ud83d\ude00"}, extra={"k\ud800": ["v\ud800"]})
    row = to_row(_Pending(record, time.time(), 1), keep_content=True)
    for key in ("request_id", "model", "error", "client", "input", "output"):
        row[key].encode("utf-8")
    assert row["model"] == "m\ufffd" and row["error"] == "e\ufffd" and json.loads(row["input"]) == {"prompt": "p\ufffd"}
    assert json.loads(row["output"]) == {"content": "😀"}  # a pair split in two code points is joined
    assert row["extra"] == {"k\ufffd": ["v\ufffd"]}


def test_a_row_that_fails_is_dropped_counted_and_reported_while_the_others_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = history_module.to_row

    def to_row_failing(item: _Pending, keep_content: bool) -> dict[str, object]:
        if item.record.path == "/api/ps":
            raise RuntimeError("not a database error")
        return real(item, keep_content)

    monkeypatch.setattr(history_module, "to_row", to_row_failing)
    settings = make_settings(tmp_path, history_flush_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        writer = services_of(client.app).history
        for path in ("/api/tags", "/api/ps", "/api/version"):
            assert client.get(path).status_code == 200
        wait_for(lambda: writer.dropped == 1 and not writer.buffer, what="the bad row to be dropped")
        assert {r.path for r in rows(client)} >= {"/api/tags", "/api/version"}
        assert "/api/ps" not in {r.path for r in rows(client)}
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and "llm" in health.json()["services"]
        part = health.json()["history"]
        assert part["ok"] is False and part["dropped"] == 1
        assert "RuntimeError: not a database error" in part["last_error"]
        metrics = client.get("/metrics").text
        assert "deskml_history_dropped_total 1.0" in metrics
        assert re.search(r"^deskml_history_write_errors_total [1-9]", metrics, re.M)
        checks = {c["name"]: c for c in client.get("/api/doctor").json()["checks"]}
        assert checks["history"]["status"] == "fail" and "not a database error" in checks["history"]["message"]
        writer.error_window = 0.2  # ok comes back once writes succeed and the error is old enough
        assert client.get("/api/tags").status_code == 200
        wait_for(lambda: client.get("/health").json()["history"]["ok"], what="the writer to report ok again")
        assert writer.task_alive


def test_a_loop_error_does_not_stop_the_writer_and_shutdown_never_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, history_flush_seconds=0.05)
    broken = {"on": True}
    real_write = HistoryWriter._write

    def write(self: HistoryWriter, batch: list[_Pending]) -> object:
        if broken["on"]:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")  # what killed it before
        return real_write(self, batch)

    monkeypatch.setattr(HistoryWriter, "_write", write)
    with TestClient(create_app(settings)) as client:
        writer = services_of(client.app).history
        client.get("/api/tags")
        wait_for(lambda: writer.write_errors >= 1, what="a write error")
        assert writer.task_alive and client.get("/health").json()["history"]["ok"] is False
        broken["on"] = False
        client.get("/api/version")
        wait_for(lambda: any(r.path == "/api/version" for r in rows(client)), what="writing to resume")
        broken["on"] = True
        client.get("/api/ps")  # left in the buffer at shutdown, which must still end cleanly
    assert writer.pending >= 1 and not writer.task_alive


def test_the_json_log_line_survives_a_lone_surrogate() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, as a UTF-8 log file is
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("deskml.test-surrogate")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("model %s", "x\ud800", extra={"error": "bad \udc00"})
        handler.flush()
        stream.seek(0)
        line = json.loads(stream.read())
    finally:
        logger.removeHandler(handler)
    assert line["message"] == "model x\ufffd" and line["error"] == "bad \ufffd"
    text = TextFormatter().format(logging.LogRecord("x", logging.INFO, "", 0, "a\ud800", None, None))
    assert text.endswith("a\ufffd")


# content off: engine errors do not carry the prompt into history or the log ----------------------
@pytest.mark.slow  # the real model
def test_engine_error_text_is_not_recorded_when_content_is_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret = "my secret prompt 4711"

    async def echoing_stream(self: object, request: EngineRequest) -> AsyncIterator[Event]:
        raise llama_cpp._error_from_llama({"code": 500, "message": f"failed to parse near '{secret}'"})
        yield Done()  # an async generator, as the real one

    monkeypatch.setattr(llama_cpp.LlamaCppModel, "stream", echoing_stream)
    for content, expect_secret in ((False, False), (True, True)):
        data = tmp_path / str(content)
        settings = make_settings(data, history_flush_seconds=0.05, history_content=content)
        with TestClient(create_app(settings)) as client:
            caplog.clear()
            reply = client.post("/api/generate", json={"model": "smollm2", "prompt": secret, "stream": False})
            assert reply.status_code == 500 and secret in reply.json()["error"]  # the caller sees it all
            wait_for(lambda: any(r.path == "/api/generate" for r in rows(client)), what="the record")
            row = next(r for r in rows(client) if r.path == "/api/generate")
            assert (secret in (row.error or "")) is expect_secret
            assert (secret in caplog.text) is expect_secret
            if not content:
                assert row.input is None and "not recorded" in (row.error or "")


# private files ----------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_database_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which gave deskml.db 0644 before
    try:
        data = tmp_path / "fresh" / "deskml"
        with TestClient(create_app(make_settings(data))) as client:
            assert client.post("/api/keys", json={"name": "k", "scopes": ["inference"]}).status_code in {200, 201}
            files = {p.name: _mode(p) for p in data.iterdir() if p.name.startswith("deskml.db")}
            assert _mode(data) == 0o700
            assert files["deskml.db"] == 0o600 and files.get("deskml.db-wal", 0o600) == 0o600
            assert files.get("deskml.db-shm", 0o600) == 0o600 and "deskml.db-wal" in files
    finally:
        os.umask(old)


def test_looser_existing_modes_are_warned_about_at_start_up_and_by_doctor(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "shared"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "deskml.db").touch()
    os.chmod(data / "deskml.db", 0o644)
    with caplog.at_level(logging.WARNING, logger="deskml.files"), \
            TestClient(create_app(make_settings(data))) as client:
        checks = {c["name"]: c for c in client.get("/api/doctor").json()["checks"]}
    warned = [r.getMessage() for r in caplog.records if r.name == "deskml.files"]
    assert len(warned) == 1 and f"{data} (755)" in warned[0] and f"{data / 'deskml.db'} (644)" in warned[0]
    assert f"chmod 700 {data}" in warned[0] and f"chmod 600 {data / 'deskml.db'}" in warned[0]
    assert checks["files"]["status"] == "warn" and checks["files"]["fix"].startswith(f"chmod 700 {data}")
    assert _mode(data / "deskml.db") == 0o644  # an operator's choice is reported, not overridden


def test_a_cli_command_before_the_first_serve_creates_the_data_dir_private(tmp_path: Path) -> None:
    from deskml.runtime.model_store import ModelStore

    old = os.umask(0o022)
    try:
        data = tmp_path / "fresh-cli" / "deskml"
        ModelStore(data / "models")  # what `deskml pull` / `deskml list` build first
        assert _mode(data) == 0o700 and _mode(data / "models") == 0o700
    finally:
        os.umask(old)
