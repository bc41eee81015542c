"""Routing between real deskml processes: a second node as an upstream (killed mid-run: fallback to a
fake cloud, then the breaker lets it back in), a routing loop between two nodes, misconfigured
upstreams named at start-up and by the doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.conftest import ServerProcess, free_port, make_settings
from tests.routing.conftest import CLOUD_KEY, cloud_block, wait_for
from tests.routing.fakes import FakeCloud

pytestmark = pytest.mark.e2e


def start_node(data_dir: Path, port: int | None = None, env: dict[str, str] | None = None) -> ServerProcess:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(data_dir, env={"DESKML_PORT": str(port), **(env or {})})
    proc.port, proc.url = port, f"http://127.0.0.1:{port}"
    proc.wait_ready(60)
    return proc


@pytest.fixture
def node2(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_node(tmp_path / "node2")
    yield proc
    proc.stop()


def test_second_node_killed_then_back(tmp_path: Path, node2: ServerProcess, cloud: FakeCloud) -> None:
    from fastapi.testclient import TestClient

    from deskml.app import create_app

    toml = (f'[router]\nhealth_interval = 0.3\nopen_seconds = 120\nfailure_threshold = 1\n'
            f'[[upstreams]]\nname = "node2"\nkind = "deskml"\nurl = "{node2.url}"\nprefix = "node2/"\n'
            + cloud_block(cloud) + '[fallback]\n"node2/*" = ["cloud/gpt-4o-mini"]\n')
    path = tmp_path / "upstreams.toml"
    path.write_text(toml)
    settings = make_settings(tmp_path / "main", upstreams_file=path, cache=False)
    body = {"model": "node2/smollm2:135m", "stream": False, "options": {"num_predict": 8, "temperature": 0},
            "messages": [{"role": "user", "content": "Name a colour."}]}
    with TestClient(create_app(settings)) as client:
        first = client.post("/api/chat", json=body)
        assert first.status_code == 200, first.text
        assert first.json()["model"] == "node2/smollm2:135m"
        assert first.json()["eval_count"] > 0 and not first.json()["message"]["content"].startswith("cloud says")
        port = node2.port
        node2.stop()
        fallback = client.post("/api/chat", json=body)
        assert fallback.status_code == 200 and fallback.json()["message"]["content"] == "cloud says: Name a colour."
        assert fallback.json()["model"] == "cloud/gpt-4o-mini"
        status = client.get("/api/admin/upstreams").json()["backends"]
        assert next(b for b in status if b["name"] == "node2")["circuit"] == "open"
        revived = start_node(tmp_path / "node2", port=port)
        try:
            wait_for(lambda: next(b for b in client.get("/api/admin/upstreams").json()["backends"]
                                  if b["name"] == "node2")["circuit"] == "half_open", timeout=20, what="half-open")
            back = client.post("/api/chat", json=body)
            assert back.json()["model"] == "node2/smollm2:135m"
            assert not back.json()["message"]["content"].startswith("cloud says")
            assert next(b for b in client.get("/api/admin/upstreams").json()["backends"]
                        if b["name"] == "node2")["circuit"] == "closed"
        finally:
            revived.stop()
        # the history is written in batches: wait for the three chats, not just any three records
        chats = "/api/history?path=/api/chat"
        wait_for(lambda: len(client.get(chats).json()["items"]) >= 3, what="history")
        backends = [i["backend"] for i in client.get(chats).json()["items"]]
        assert backends.count("upstream:node2") == 2 and backends.count("upstream:cloud") == 1


def test_ollama_client_through_a_routing_node(tmp_path: Path, node2: ServerProcess) -> None:
    """The official ollama client streams from a node that forwards to another deskml node."""
    path = tmp_path / "upstreams.toml"
    path.write_text(f'[[upstreams]]\nname = "node2"\nkind = "deskml"\nurl = "{node2.url}"\nprefix = "far/"\n')
    front = start_node(tmp_path / "front", env={"DESKML_UPSTREAMS_FILE": str(path)})
    try:
        client = ollama.Client(host=front.url)
        names = [m.model for m in client.list().models]
        assert "far/smollm2:135m" in names and "smollm2:135m" in names
        parts = list(client.chat(model="far/smollm2:135m", stream=True, options={"num_predict": 6},
                                 messages=[{"role": "user", "content": "Hi"}]))
        assert parts[-1].done and parts[-1].model == "far/smollm2:135m"
        assert "".join(p.message.content or "" for p in parts).strip()
        assert "routing: node" in front.log() and "node2 (deskml" in front.log()
    finally:
        front.stop()


def test_routing_loop_between_two_nodes_is_refused(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    for name, other in (("a", port_b), ("b", port_a)):
        (tmp_path / f"{name}.toml").write_text(
            f'[[upstreams]]\nname = "peer"\nkind = "deskml"\nurl = "http://127.0.0.1:{other}"\nmodels = ["loopy"]\n')
    a = start_node(tmp_path / "a", port_a, {"DESKML_UPSTREAMS_FILE": str(tmp_path / "a.toml"), "DESKML_NODE_NAME": "a"})
    b = start_node(tmp_path / "b", port_b, {"DESKML_UPSTREAMS_FILE": str(tmp_path / "b.toml"), "DESKML_NODE_NAME": "b"})
    try:
        wait_for(lambda: "peer" in json.dumps(httpx.get(a.url + "/api/admin/upstreams").json())
                 and httpx.get(a.url + "/api/admin/upstreams").json()["backends"][1]["up"], what="a sees b")
        reply = httpx.post(a.url + "/api/chat", json={"model": "loopy", "messages": [{"role": "user", "content": "x"}]},
                           timeout=30)
        assert reply.status_code == 508, reply.text
        assert "routing loop" in reply.json()["error"] and "a -> b" in reply.json()["error"]
        openai_reply = httpx.post(b.url + "/v1/chat/completions", timeout=30, json={
            "model": "loopy", "messages": [{"role": "user", "content": "x"}]})
        assert openai_reply.status_code == 508 and openai_reply.json()["error"]["code"] == "loop_detected"
    finally:
        a.stop()
        b.stop()


def test_misconfigured_upstreams_named_at_startup_and_by_doctor(tmp_path: Path, cloud: FakeCloud) -> None:
    toml = (cloud_block(cloud, name="wrongkey").replace("FAKE_CLOUD_KEY", "WRONG_KEY")
            + '[[upstreams]]\nname = "badurl"\nkind = "ollama"\nurl = "http://127.0.0.1:9"\n'
            + '[[upstreams]]\nname = "nokey"\nkind = "openai"\nurl = "http://127.0.0.1:9"\n'
            + 'api_key_env = "UNSET_KEY_X"\n')
    path = tmp_path / "upstreams.toml"
    path.write_text(toml)
    env = {"DESKML_UPSTREAMS_FILE": str(path), "WRONG_KEY": "sk-wrong"}
    node = start_node(tmp_path / "node", env=env)
    try:
        log = node.log()
        assert "wrongkey" in log and "refused the API key (401)" in log
        assert "badurl" in log and "unreachable at http://127.0.0.1:9" in log
        assert "nokey" in log and "UNSET_KEY_X is not set" in log
        report = httpx.get(node.url + "/api/doctor").json()
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["upstream wrongkey"]["status"] == "fail" and "401" in checks["upstream wrongkey"]["message"]
        assert checks["upstream badurl"]["status"] == "fail"
        assert "UNSET_KEY_X" in checks["upstream nokey"]["fix"]
    finally:
        node.stop()
    # the CLI probes the same file without a server
    cli_env = {**os.environ, **env, "DESKML_DATA_DIR": str(tmp_path / "node"), "DESKML_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", "doctor", "--json"], env=cli_env,
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    failing = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert {"upstream wrongkey", "upstream badurl", "upstream nokey", "bind"} <= failing
    assert done.returncode == 1  # loopback bind: a phone could not connect


def _status(client: Any) -> dict[str, Any]:
    return {b["name"]: b for b in client.get("/api/admin/upstreams").json()["backends"]}


def test_cloud_key_is_sent_and_hops_header_only_to_deskml(tmp_path: Path, cloud: FakeCloud) -> None:
    from fastapi.testclient import TestClient

    from deskml.app import create_app

    path = tmp_path / "u.toml"
    path.write_text(cloud_block(cloud))
    settings = make_settings(tmp_path / "d", upstreams_file=path, node_name="front")
    with TestClient(create_app(settings)) as client:
        reply = client.post("/api/generate", json={"model": "cloud/gpt-4o-mini", "prompt": "hey", "stream": False})
        assert reply.status_code == 200 and reply.headers["x-deskml-node"] == "front"
        assert cloud.calls[-1]["headers"]["authorization"] == f"Bearer {CLOUD_KEY}"
        assert "x-deskml-via" not in cloud.calls[-1]["headers"]
        assert _status(client)["cloud"]["up"]
