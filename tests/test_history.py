"""Request history on SQLite and (in CI) PostgreSQL and MariaDB: what a request leaves behind,
filters and pagination of GET /api/history, content off, retention, and a database outage in the
middle of serving (requests answered, drops counted, writing resumes)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.principal import ALL_SCOPES
from deskml.services.auth import CredentialStore
from deskml.services.db import Database, HistoryRow
from deskml.services.history import prune
from tests.conftest import make_settings, services_of
from tests.dbs import TcpProxy, isolated

DET = {"temperature": 0, "num_predict": 8}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start(tmp_path: Path, url: str, **overrides: object) -> tuple[TestClient, CredentialStore]:
    values: dict[str, Any] = {"auth": "required", "auth_cache_seconds": 0, "history_flush_seconds": 0.05}
    values.update(overrides)
    settings = make_settings(tmp_path, database_url=url, **values)
    db = Database(url)
    db.migrate()
    return TestClient(create_app(settings)), CredentialStore(db)


def settled(client: TestClient, count: int) -> Callable[[], bool]:
    writer = services_of(client.app).history
    return lambda: writer.written + writer.dropped >= count and not writer.buffer


def history(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    r = client.get("/api/history", params=params, headers=bearer(key))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.slow  # the real model
def test_requests_are_recorded_with_timings_tokens_content_and_who(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        _, admin_key = store.create_key("admin", ALL_SCOPES)
        phone, phone_key = store.create_key("phone", frozenset({"inference"}))
        store.create_user("alice", "password123", frozenset({"inference"}))
        token = client.post("/login", json={"username": "alice", "password": "password123"}).json()["access_token"]

        gen = client.post("/api/generate", headers=bearer(phone_key), json={
            "model": "smollm2", "prompt": "Say hello.", "stream": False, "options": DET})
        assert gen.status_code == 200
        answer = gen.json()["response"]
        stream = client.post("/api/chat", headers=bearer(token), json={
            "model": "smollm2", "messages": [{"role": "user", "content": "Count to three."}], "options": DET})
        assert stream.status_code == 200
        assert client.get("/api/tags", headers=bearer(token)).status_code == 200
        assert client.post("/api/show", json={"model": "no-such"}, headers=bearer(phone_key)).status_code == 404
        assert client.get("/api/tags", headers=bearer("dk_bogus_key")).status_code == 401
        wait_for(settled(client, 6), what="history flush")  # + the /login request

        page = history(client, admin_key, model="smollm2:135m")
        assert [i["path"] for i in page["items"]] == ["/api/chat", "/api/generate"]
        chat, generate = page["items"]
        assert generate["principal_id"] == phone.id and generate["principal_kind"] == "key"
        assert generate["dialect"] == "ollama" and generate["method"] == "POST" and generate["status"] == 200
        assert generate["backend"] == "llama.cpp" and generate["client"]
        assert generate["input"] == {"prompt": "Say hello."}
        assert generate["output"] == {"content": answer}
        assert 0 < generate["completion_tokens"] <= 8 and generate["prompt_tokens"] > 0
        assert generate["eval_ns"] > 0 and generate["prompt_eval_ns"] > 0 and generate["ttft_ns"] > 0
        assert generate["duration_ns"] >= generate["eval_ns"]
        assert chat["principal_id"] == "alice" and chat["principal_kind"] == "user"
        assert chat["input"] == {"messages": [{"role": "user", "content": "Count to three."}]}
        assert chat["output"]["content"] and chat["completion_tokens"] > 0

        by_alice = history(client, admin_key, user="alice")["items"]
        assert [i["path"] for i in by_alice] == ["/api/tags", "/api/chat"]
        failures = history(client, admin_key, status="4xx")["items"]
        assert sorted((i["path"], i["status"]) for i in failures) == [("/api/show", 404), ("/api/tags", 401)]
        refused = next(i for i in failures if i["status"] == 401)
        assert refused["principal_id"] is None and refused["error"] == "invalid or revoked API key"
        assert history(client, admin_key, status="404")["items"][0]["error"]
        assert history(client, admin_key, since="1h", until=(datetime.now(UTC) + timedelta(minutes=1)).isoformat())[
            "items"]
        assert history(client, admin_key, until="2020-01-01T00:00:00Z")["items"] == []
        assert history(client, admin_key, model="smollm2:135m", content="false")["items"][0]["input"] is None
        assert [i["path"] for i in history(client, admin_key, method="get", user="alice")["items"]] == ["/api/tags"]
        assert [i["path"] for i in history(client, admin_key, path="/api/ch")["items"]] == ["/api/chat"]
        assert history(client, admin_key, path="/api/%")["items"] == []  # a prefix, not a LIKE pattern

        # Pagination: walking the cursor visits every row once, newest first.
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = history(client, admin_key, **params)
            seen.extend(i["id"] for i in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 6
        assert client.get("/api/history?limit=0", headers=bearer(admin_key)).status_code == 400
        assert client.get("/api/history?status=teapot", headers=bearer(admin_key)).status_code == 400
        assert client.get("/api/history?since=yesterday", headers=bearer(admin_key)).status_code == 400


@pytest.mark.slow  # the real model
def test_history_content_off_keeps_metadata_only(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url, history_content=False)
    with client:
        _, key = store.create_key("admin", ALL_SCOPES)
        r = client.post("/api/generate", headers=bearer(key), json={
            "model": "smollm2", "prompt": "Secret prompt.", "stream": False, "options": DET})
        assert r.status_code == 200
        wait_for(settled(client, 1), what="history flush")
        item = history(client, key, model="smollm2:135m")["items"][0]
        assert item["input"] is None and item["output"] is None and item["completion_tokens"] > 0


def test_retention_prunes_only_old_rows(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        now = datetime.now(UTC)
        base = {"dialect": "ollama", "method": "GET", "path": "/api/tags", "status": 200, "duration_ns": 1,
                "queue_ns": 0, "load_ns": 0, "prompt_eval_ns": 0, "eval_ns": 0, "prompt_tokens": 0,
                "completion_tokens": 0}
        with db.session() as session:
            session.execute(sa.insert(HistoryRow), [
                {**base, "request_id": "old", "created_at": now - timedelta(days=40)},
                {**base, "request_id": "recent", "created_at": now - timedelta(days=2)},
            ])
        assert prune(db, 0) == 0
        assert prune(db, 30) == 1
        with db.session() as session:
            assert list(session.scalars(sa.select(HistoryRow.request_id))) == ["recent"]
    finally:
        db.close()


class Outage:
    """Makes the history database unreachable and reachable again without touching shared services:
    SQLite is locked by another connection (writes fail with 'database is locked'); PostgreSQL and
    MariaDB are reached through a proxy whose connections are cut."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.proxy = TcpProxy(5432 if kind == "postgresql" else 3306) if kind != "sqlite" else None
        self.lock: sqlite3.Connection | None = None

    def url(self) -> Any:
        return isolated(self.kind, self.tmp_path, via=self.proxy.address if self.proxy else None)

    def start_db(self) -> None:
        if self.proxy:
            self.proxy.up()

    def down(self) -> None:
        if self.proxy:
            self.proxy.down()
        else:
            self.lock = sqlite3.connect(self.tmp_path / "deskml.db", timeout=10, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")

    def up(self) -> None:
        if self.proxy:
            self.proxy.up()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()

    def close(self) -> None:
        if self.proxy:
            self.proxy.close()


def test_database_outage_requests_answered_drops_counted_history_resumes(db_kind: str, tmp_path: Path) -> None:
    outage = Outage(db_kind, tmp_path)
    outage.start_db()
    try:
        with outage.url() as url:
            client, store = start(tmp_path, url, history_buffer=5, auth_cache_seconds=0.2)
            _, key = store.create_key("admin", ALL_SCOPES)
            _, unseen_key = store.create_key("unseen", ALL_SCOPES)
            store.db.close()
            with client:
                writer = services_of(client.app).history
                for _ in range(2):
                    assert client.get("/api/tags", headers=bearer(key)).status_code == 200
                wait_for(lambda: writer.written == 2, what="first rows written")

                outage.down()
                time.sleep(0.3)  # the key's cache entry is now stale: auth must fall back on it
                for _ in range(12):
                    r = client.get("/api/tags", headers=bearer(key))
                    assert r.status_code == 200 and r.json()["models"]
                wait_for(lambda: not writer.healthy, timeout=30, what="the writer to notice the outage")
                unseen = client.get("/api/tags", headers=bearer(unseen_key))
                if db_kind == "sqlite":  # a write lock still lets readers verify keys
                    assert unseen.status_code == 200
                else:  # a key never verified before cannot be checked: retry later, not "bad key"
                    assert unseen.status_code == 503 and unseen.headers["retry-after"] == "5"
                    assert "auth database is unreachable" in unseen.json()["error"]
                # Settled: no batch in flight, every outage-time record either waiting or dropped.
                wait_for(lambda: writer.dropped + writer.pending == 13, timeout=30, what="the buffer to settle")
                assert writer.pending <= 5 and writer.dropped >= 13 - 5 and writer.written == 2

                outage.up()
                wait_for(lambda: writer.healthy and writer.written + writer.dropped == 15, timeout=30,
                         what="writing to resume")
                assert not writer.buffer
                assert client.get("/api/tags", headers=bearer(key)).status_code == 200
                wait_for(lambda: writer.written + writer.dropped == 16 and not writer.buffer, what="the last row")
                rows = history(client, key, limit=100)["items"]
                tags = [i for i in rows if i["path"] == "/api/tags"]
                assert len(tags) == writer.written and writer.dropped >= 8
    finally:
        outage.close()
