"""History across real nodes sharing one PostgreSQL database (CI): two nodes and a forward-only router,
auth on with shared keys. A routed chat leaves two rows with one request id, each naming its node; the
node's row names the router's key as its caller and the original caller only as the router's claim;
the router's health checks leave no rows; pages come newest first by time across the nodes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskml.core.principal import ALL_SCOPES
from deskml.services.auth import CredentialStore
from deskml.services.db import Database
from tests.conftest import ServerProcess
from tests.dbs import isolated, require_service
from tests.routing.conftest import wait_for
from tests.routing.nodes import start_node

pytestmark = pytest.mark.e2e

HEALTH_INTERVAL = 2.0  # seconds: the shortest the shared test machine copes with


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def all_rows(url: str, admin: str, **params: Any) -> list[dict[str, Any]]:
    """Every row matching `params`, walking the cursor 7 rows at a time (pages cut across nodes)."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 7, "content": "false", **params, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(url + "/api/history", params=query, headers=bearer(admin), timeout=10).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def chat(url: str, key: str, stream: bool, n: int) -> str:
    """One chat through `url`; the request id it was answered under."""
    body = {"model": "smollm2", "stream": stream, "options": {"num_predict": 3, "temperature": 0},
            "messages": [{"role": "user", "content": f"Say a word ({n})."}]}
    with httpx.stream("POST", url + "/api/chat", json=body, headers=bearer(key), timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        reply.read()
        return reply.headers["x-request-id"]


def test_a_routed_request_is_followed_across_nodes(tmp_path: Path) -> None:
    require_service("postgresql")
    with isolated("postgresql", tmp_path) as url:
        db = Database(url)
        db.migrate()
        store = CredentialStore(db)
        _, admin = store.create_key("admin", ALL_SCOPES)
        alice, alice_key = store.create_key("alice", frozenset({"inference"}))
        router_info, router_key = store.create_key("router", frozenset({"inference"}))
        router_id = router_info.id
        db.close()
        shared = {"DESKML_DATABASE_URL": url, "DESKML_AUTH": "required", "DESKML_HISTORY_FLUSH_SECONDS": "0.2",
                  "DESKML_CACHE": "false"}
        procs: list[ServerProcess] = []
        try:
            nodes = {name: start_node(tmp_path / name, shared, name=f"node-{name}") for name in ("a", "b")}
            procs += nodes.values()
            toml = f"[router]\nhealth_interval = {HEALTH_INTERVAL}\n" + "".join(
                f'[[upstreams]]\nname = "{name}"\nkind = "deskml"\nurl = "{node.url}"\nprefix = ""\n'
                f'api_key_env = "ROUTER_KEY"\n' for name, node in nodes.items())
            (tmp_path / "router").mkdir()
            (tmp_path / "router" / "upstreams.toml").write_text(toml, "utf-8")
            router = start_node(tmp_path / "router", {
                **shared, "ROUTER_KEY": router_key, "DESKML_FORWARD_ONLY": "true",
                "DESKML_UPSTREAMS_FILE": str(tmp_path / "router" / "upstreams.toml")}, name="router")
            procs.append(router)
            router_started = time.monotonic()

            def all_up() -> bool:
                backends = httpx.get(router.url + "/api/admin/upstreams", headers=bearer(admin),
                                     timeout=5).json()["backends"]
                return all(b["up"] for b in backends if b["name"] != "local")

            wait_for(all_up, timeout=30, what="the router to see both nodes")
            # Two clients at once, so that both nodes answer; streaming and not.
            with ThreadPoolExecutor(2) as pool:
                ids = list(pool.map(lambda n: chat(router.url, alice_key, n % 2 == 0, n), range(4)))
            # A client calling a node directly with the router's headers: its claim is recorded as such.
            spoofed = httpx.post(nodes["a"].url + "/api/show", json={"model": "smollm2"}, timeout=30, headers={
                **bearer(alice_key), "X-Deskml-On-Behalf-Of": "admin", "X-Request-Id": "spoofed-1"})
            assert spoofed.status_code == 200 and spoofed.headers["x-request-id"] == "spoofed-1"
            # Let the router check its nodes a few more times before reading the history.
            time.sleep(max(0.0, 4 * HEALTH_INTERVAL - (time.monotonic() - router_started)))
            checks = int((time.monotonic() - router_started) / HEALTH_INTERVAL) + 1  # + the one at start
            # The history is written in batches: wait for both rows of every chat.
            # (a name the router had to ask a node about adds that /api/show to the same request id)
            wait_for(lambda: all(len(all_rows(nodes["b"].url, admin, request_id=i, path="/api/chat")) == 2
                                 for i in ids), timeout=30, what="two rows per routed chat")

            answered_by, inverted = set(), 0
            for request_id in ids:
                rows = all_rows(nodes["b"].url, admin, request_id=request_id, path="/api/chat", content="true")
                by_node = {row["node"]: row for row in rows}
                assert len(by_node) == 2 and "router" in by_node, rows
                front = by_node.pop("router")
                (name, back), = by_node.items()
                answered_by.add(name)
                assert name in {"node-a", "node-b"} and back["backend"] == "llama.cpp"
                assert front["principal_id"] == alice.id and front["backend"] == f"upstream:{name[-1]}"
                assert back["principal_id"] == router_id  # who authenticated to the node
                assert back["extra"]["via_principal"] == alice.id  # whom the router says it acted for
                assert front["path"] == back["path"] == "/api/chat" and front["status"] == back["status"] == 200
                assert back["output"]["content"] == front["output"]["content"]
                # the router's row began first (it then called the node), so it is the older one
                assert front["created_at"] <= back["created_at"]
                inverted += front["id"] > back["id"]  # written after the node's row: insert order is not time order
            print(f"\nchats answered by {sorted(answered_by)}; {checks} health checks per node; "
                  f"{inverted} of {len(ids)} router rows inserted after their node's row")

            claimed = all_rows(nodes["a"].url, admin, request_id="spoofed-1")[0]
            assert claimed["principal_id"] == alice.id and claimed["extra"]["via_principal"] == "admin"
            assert all_rows(router.url, admin, user="admin") == []  # a claim is nobody's request

            # No health check of the router left a row on the nodes (or anywhere).
            everything = all_rows(router.url, admin)
            assert checks >= 4
            assert [r for r in everything if r["path"] in {"/api/tags", "/v1/models"}] == []
            # while the test's own readiness polls (GET /api/version without the header) are requests like any
            assert {r["node"] for r in everything if r["path"] == "/api/version"} == {"node-a", "node-b", "router"}
            # Newest first by when requests arrived, whichever node wrote them and in whatever order.
            stamps = [datetime.fromisoformat(r["created_at"].replace("Z", "+00:00")) for r in everything]
            assert stamps == sorted(stamps, reverse=True)
            assert {r["node"] for r in everything} >= {"router", *answered_by}
            assert all_rows(router.url, admin, node="router", path="/api/chat") == [
                r for r in everything if r["node"] == "router" and r["path"] == "/api/chat"]
        finally:
            for proc in procs:
                proc.stop()
