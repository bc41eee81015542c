"""History across nodes, in process (SQLite, and PostgreSQL and MariaDB in CI): which X-Request-Id a
node adopts, X-Deskml-On-Behalf-Of kept as a claim and never as authority, a router's health checks
left out (and what a client cannot hide with the same header), the node column and its filter,
newest-first by time with a keyset cursor, `status=error` for failures after a 200, and migration
0004 up and down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from deskml.api.middleware.observe import request_id_from
from deskml.app import create_app
from deskml.core.context import RequestRecord
from deskml.core.principal import ALL_SCOPES
from deskml.core.trace import annotate, claimed_principal, encode_principal, unrecorded, upstream_headers
from deskml.services.auth import CredentialStore
from deskml.services.db import Database, HistoryRow
from deskml.services.history import encode_cursor, parse_cursor
from tests.conftest import make_settings, services_of
from tests.test_history import bearer, history, settled, wait_for


# sanitising ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, adopted", [
    (b"3f2c9a", True), (b"router-1:req_42.a", True), (b"x" * 128, True),
    (b"x" * 129, False), (b"", False), (b"a b", False), (b"<script>", False), (b"id\r\nX-Evil: 1", False),
    ("caf\u00e9".encode("latin-1"), False), (b"../../etc", False),
])
def test_a_node_adopts_only_a_sane_request_id(value: bytes, adopted: bool) -> None:
    got = request_id_from([(b"x-request-id", value)])
    if adopted:
        assert got == value.decode()
    else:
        assert got != value.decode("latin-1") and len(got) == 32 and got.isalnum()


@pytest.mark.parametrize("principal", ["alice", "k1a2b3c4d5e6f7a8", "zoë@example.org", "用户", "a/b%c"])
def test_a_principal_survives_the_header_round_trip(principal: str) -> None:
    encoded = encode_principal(principal)
    assert encoded.isascii() and " " not in encoded
    assert claimed_principal(encoded.encode()) == principal


@pytest.mark.parametrize("raw", [b"", b"a b", b"a%20b", b"a%0Ab", b"x" * 201, b"%FF%FE", b"tab%09"])
def test_an_insane_claim_is_dropped(raw: bytes) -> None:
    assert claimed_principal(raw) is None


def test_upstream_headers_carry_the_id_and_the_first_caller() -> None:
    record = RequestRecord(request_id="r-1", principal_id="zoë")
    assert upstream_headers(record) == {"x-request-id": "r-1", "x-deskml-on-behalf-of": "zo%C3%AB"}
    # A request that came through another router keeps the caller that router named, not its key.
    record = RequestRecord(request_id="r-2", principal_id="router-key", extra={"via_principal": "alice"})
    assert upstream_headers(record)["x-deskml-on-behalf-of"] == "alice"
    assert upstream_headers(RequestRecord(request_id="r-3")) == {"x-request-id": "r-3"}
    assert upstream_headers(None) == {}


@pytest.mark.parametrize("method, path, status, skipped", [
    ("GET", "/api/tags", 200, True), ("HEAD", "/api/version", 200, True), ("GET", "/v1/models", 200, True),
    ("GET", "/api/tags", 401, False), ("GET", "/api/tags", 429, False), ("POST", "/api/show", 200, False),
    ("POST", "/api/chat", 200, False), ("GET", "/api/history", 200, False), ("GET", "/api/ps", 200, False),
])
def test_only_successful_data_free_health_checks_go_unrecorded(method: str, path: str, status: int,
                                                               skipped: bool) -> None:
    record = RequestRecord(request_id="r", method=method, path=path, status=status, extra={"health_check": True})
    assert unrecorded(record) is skipped
    record.extra.clear()
    assert unrecorded(record) is False


def test_cursor_round_trip_and_refusals() -> None:
    when = datetime(2026, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert parse_cursor(encode_cursor(when, 42)) == (when, 42)
    assert parse_cursor(encode_cursor(when.replace(tzinfo=None), 7)) == (when, 7)
    for bad in ["1234", "abc-1", "1-", "-1", "1-2-3", "9" * 30 + "-1"]:
        with pytest.raises(Exception, match="cursor"):
            parse_cursor(bad)


# a node's own history ----------------------------------------------------------------------------
def start(tmp_path: Path, url: str, **overrides: object) -> tuple[TestClient, CredentialStore]:
    values: dict[str, Any] = {"auth": "required", "auth_cache_seconds": 0, "history_flush_seconds": 0.05,
                              "node_name": "node-a"}
    values.update(overrides)
    db = Database(url)
    db.migrate()
    return TestClient(create_app(make_settings(tmp_path, database_url=url, **values))), CredentialStore(db)


def test_ids_claims_health_checks_and_node_on_a_node(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        _, admin = store.create_key("admin", ALL_SCOPES)
        mallory, mallory_key = store.create_key("mallory", frozenset({"inference"}))
        # A claim is no credential: without a key of its own the request is refused.
        assert client.get("/api/tags", headers={"X-Deskml-On-Behalf-Of": "admin"}).status_code == 401
        r = client.get("/api/tags", headers={**bearer(mallory_key), "X-Request-Id": "trace-0001",
                                             "X-Deskml-On-Behalf-Of": encode_principal("alice")})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-0001"
        bad = client.get("/api/ps", headers={**bearer(mallory_key), "X-Request-Id": "no spaces <allowed>"})
        assert bad.headers["x-request-id"] != "no spaces <allowed>"
        # What a client can and cannot hide with the health-check header.
        hidden = client.get("/api/tags", headers={**bearer(mallory_key), "X-Deskml-Health-Check": "1"})
        assert hidden.status_code == 200
        refused = client.get("/api/tags", headers={**bearer("dk_bogus"), "X-Deskml-Health-Check": "1",
                                                   "X-Request-Id": "refused-probe"})
        assert refused.status_code == 401
        shown = client.post("/api/show", json={"model": "nope"},
                            headers={**bearer(mallory_key), "X-Deskml-Health-Check": "1", "X-Request-Id": "show-1"})
        assert shown.status_code == 404
        wait_for(settled(client, 5), what="history flush")

        rows = history(client, admin, limit=100)["items"]
        assert {row["node"] for row in rows} == {"node-a"}
        assert len([r for r in rows if r["path"] == "/api/tags" and r["status"] == 200]) == 1  # not the probe
        traced = history(client, admin, request_id="trace-0001")["items"]
        assert len(traced) == 1
        assert traced[0]["principal_id"] == mallory.id and traced[0]["extra"]["via_principal"] == "alice"
        # the claim names nobody for the filters: alice made no request
        assert history(client, admin, user="alice")["items"] == []
        assert history(client, admin, request_id="refused-probe")["items"][0]["extra"]["health_check"] is True
        assert history(client, admin, request_id="show-1")["items"][0]["status"] == 404
        # (the history reads above are recorded as they go: compare ids, not counts)
        assert {r["id"] for r in rows} <= {r["id"] for r in history(client, admin, node="node-a", limit=100)["items"]}
        assert history(client, admin, node="node-b")["items"] == []
        one = history(client, admin, id=traced[0]["id"])["items"]
        assert [i["request_id"] for i in one] == ["trace-0001"]
        assert client.get("/api/history?cursor=12", headers=bearer(admin)).status_code == 400


def _row(request_id: str, when: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"request_id": request_id, "created_at": when, "dialect": "ollama", "method": "POST",
                            "path": "/api/chat", "status": 200, "duration_ns": 1, "queue_ns": 0, "load_ns": 0,
                            "prompt_eval_ns": 0, "eval_ns": 0, "prompt_tokens": 0, "completion_tokens": 0}
    return {**base, **values}


def test_pages_follow_time_not_insert_order_and_error_includes_failed_streams(database_url: str,
                                                                                tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url, history=False)
    with client:
        _, admin = store.create_key("admin", ALL_SCOPES)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        # Inserted as two nodes' writers would: B's batch (older requests) lands after A's.
        rows = [_row("a1", t0 + timedelta(seconds=3), node="a"), _row("a2", t0 + timedelta(seconds=5), node="a"),
                _row("b1", t0 + timedelta(seconds=1), node="b"), _row("b2", t0 + timedelta(seconds=4), node="b"),
                _row("b3", t0 + timedelta(seconds=4), node="b"),  # a tie: the id decides
                _row("b4", t0 + timedelta(seconds=2), node="b", error="upstream 'a' failed mid-reply"),
                _row("a3", t0 + timedelta(seconds=6), node="a", status=503, error="busy")]
        db = services_of(client.app).db
        with db.session() as session:
            session.execute(sa.insert(HistoryRow), rows)
        expected = ["a3", "a2", "b3", "b2", "a1", "b4", "b1"]
        assert [i["request_id"] for i in history(client, admin, limit=100)["items"]] == expected
        for size in (1, 2, 3):
            seen, cursor = [], None
            while True:
                page = history(client, admin, limit=size, **({"cursor": cursor} if cursor else {}))
                seen += [i["request_id"] for i in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == expected, size
        assert [i["request_id"] for i in history(client, admin, status="error")["items"]] == ["a3", "b4"]
        assert "b4" not in [i["request_id"] for i in history(client, admin, status="ok")["items"]]
        assert [i["request_id"] for i in history(client, admin, status="5xx")["items"]] == ["a3"]
        assert [i["request_id"] for i in history(client, admin, node="b", status="error")["items"]] == ["b4"]


def test_migration_0004_up_and_down_keeps_rows(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        with db.session() as session:
            session.execute(sa.insert(HistoryRow), [_row("kept", datetime.now(UTC), node="a")])

        from alembic import command

        from deskml.services.db import alembic_config

        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003_conversations")
        with db.engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("request_history")}
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("request_history")}
            assert "node" not in columns and "ix_request_history_created_at" in indexes
            assert conn.execute(sa.text("SELECT request_id FROM request_history")).scalars().all() == ["kept"]
        db.migrate()
        with db.engine.connect() as conn:
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("request_history")}
            assert {"ix_request_history_created_at_id", "ix_request_history_node"} <= indexes
            assert "ix_request_history_created_at" not in indexes
            assert conn.execute(sa.text("SELECT node FROM request_history")).scalars().all() == [None]
    finally:
        db.close()


def test_the_kubernetes_probes_say_they_are_health_checks() -> None:
    import yaml

    docs = list(yaml.safe_load_all((Path(__file__).parent.parent / "deploy/kubernetes/deployment.yaml").read_text()))
    pod = next(d for d in docs if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = pod["containers"][0][probe]["httpGet"]
        record = RequestRecord(request_id="r", method="GET", path=get["path"], status=200)
        annotate(record, [(h["name"].lower().encode(), h["value"].encode()) for h in get["httpHeaders"]])
        assert unrecorded(record), probe


def test_the_cli_table_names_backend_node_and_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from deskml.cli.main import app

    monkeypatch.setenv("DESKML_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DESKML_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    db = Database(f"sqlite:///{tmp_path / 'deskml.db'}")
    db.migrate()
    now = datetime.now(UTC)
    with db.session() as session:
        session.execute(sa.insert(HistoryRow), [
            _row("r1", now, backend="upstream:a", node="router", principal_id="kalice"),
            _row("r1", now + timedelta(milliseconds=3), backend="llama.cpp", node="node-a", principal_id="krouter",
                 extra={"via_principal": "kalice"}),
            _row("other", now, backend="llama.cpp", node="node-b")])
    db.close()
    out = CliRunner().invoke(app, ["history", "--request-id", "r1"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "BACKEND" in lines[0] and "NODE" in lines[0] and len(lines) == 3
    assert "upstream:a" in lines[1] and " router " in lines[1] and "kalice" in lines[1]
    assert "llama.cpp" in lines[2] and "node-a" in lines[2] and "krouter (for kalice)" in lines[2]
    only_b = CliRunner().invoke(app, ["history", "--node", "node-b"]).output.splitlines()
    assert len(only_b) == 2 and "node-b" in only_b[1]
