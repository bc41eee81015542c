"""A standard load balancer in front of identical nodes: Debian's nginx with deploy/nginx/deskml.conf
(only the node addresses and the port changed) in front of two deskml nodes on loopback, run as an
unprivileged user with its own prefix, pid, log and temp paths. Streams arrive token by token, both
nodes get traffic, /api/version is the health check."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port
from tests.routing.nodes import start_node

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "nginx" / "deskml.conf"
NOBODY = 65534


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but nginx is not installed (make dev installs Debian's nginx-light)")
        pytest.skip("nginx is not installed: apt-get install nginx-light (make dev does), or set CI=true")
    return found


def render(nodes: list[ServerProcess], port: int, prefix: Path) -> Path:
    site = EXAMPLE.read_text("utf-8")
    for example, node in zip(("10.0.0.11:11434", "10.0.0.12:11434"), nodes, strict=True):
        assert example in site
        site = site.replace(example, f"127.0.0.1:{node.port}")
    assert "listen 80;" in site
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (prefix / "deskml.conf").write_text(site, "utf-8")
    temp = "\n".join(f"    {name}_temp_path {prefix / name};" for name in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    main = (f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\nworker_processes 1;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n    include {prefix / 'deskml.conf'};\n}}\n")
    path = prefix / "nginx.conf"
    path.write_text(main, "utf-8")
    return path


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[tuple[str, list[ServerProcess]]]:
    binary = nginx_binary()
    nodes = [start_node(tmp_path / name, name=name) for name in ("a", "b")]
    # its own prefix, outside pytest's root-only temp dir, readable by the unprivileged user it runs as
    prefix = Path(tempfile.mkdtemp(prefix="deskml-nginx-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        conf = render(nodes, port, prefix)
        command = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
        if os.geteuid() == 0:  # never run the test's nginx as root
            os.chown(prefix, NOBODY, NOBODY)
            for item in prefix.iterdir():
                os.chown(item, NOBODY, NOBODY)
            command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            try:
                if httpx.get(url + "/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not answer /api/version")
            time.sleep(0.1)
        yield url, nodes
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        for node in nodes:
            node.stop()
        shutil.rmtree(prefix, ignore_errors=True)


def test_nginx_streams_token_by_token_and_balances_two_nodes(balanced: tuple[str, list[ServerProcess]]) -> None:
    url, _ = balanced
    health = httpx.get(url + "/api/version", timeout=10)
    assert health.status_code == 200 and health.json()["version"]  # the health check, through nginx

    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Count from one to twenty."}],
            "options": {"num_predict": 24, "temperature": 0}}
    httpx.post(url + "/api/chat", json={**body, "stream": False}, timeout=300)  # load the model first
    reads: list[tuple[float, bytes]] = []
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=300) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
        for raw in response.iter_raw():
            reads.append((time.monotonic(), raw))
    text = b"".join(raw for _, raw in reads).decode()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 10 and '"done":true' in lines[-1]
    # buffered by nginx it would come in one piece at the end; unbuffered, token lines come as they are made
    assert len(reads) >= 5, f"the stream arrived in {len(reads)} piece(s)"
    assert reads[-1][0] - reads[0][0] > 0.05

    answered_by = []
    for turn in range(6):
        short = {**body, "stream": False, "options": {"num_predict": 2},
                 "messages": [{"role": "user", "content": f"{turn}"}]}
        reply = httpx.post(url + "/api/chat", json=short, timeout=300)
        assert reply.status_code == 200, reply.text
        answered_by.append(reply.headers["x-deskml-node"])
    assert set(answered_by) == {"a", "b"}, answered_by
