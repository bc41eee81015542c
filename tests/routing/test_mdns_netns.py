"""mDNS advertisement seen by `deskml discover` running in another network namespace: the test builds
two namespaces joined by a veth pair, so nothing is ever sent on a real network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # network namespaces and deskml subprocesses

SERVER_IP, CLIENT_IP = "10.77.31.1", "10.77.31.2"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    tag = f"{os.getpid() % 100000}"
    server_ns, client_ns = f"dkms{tag}", f"dkmc{tag}"
    made = _ip("netns", "add", server_ns)
    if made.returncode != 0:
        reason = f"cannot create network namespaces here ({made.stderr.strip() or 'ip netns add failed'})"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must run as root with iproute2")
        pytest.skip(reason + "; run as root (CI does)")
    try:
        steps = [
            ("netns", "add", client_ns),
            ("link", "add", f"vs{tag}", "type", "veth", "peer", "name", f"vc{tag}"),
            ("link", "set", f"vs{tag}", "netns", server_ns),
            ("link", "set", f"vc{tag}", "netns", client_ns),
            ("-n", server_ns, "addr", "add", f"{SERVER_IP}/24", "dev", f"vs{tag}"),
            ("-n", client_ns, "addr", "add", f"{CLIENT_IP}/24", "dev", f"vc{tag}"),
            ("-n", server_ns, "link", "set", f"vs{tag}", "up", "multicast", "on"),
            ("-n", client_ns, "link", "set", f"vc{tag}", "up", "multicast", "on"),
            ("-n", server_ns, "link", "set", "lo", "up"),
            ("-n", client_ns, "link", "set", "lo", "up"),
            ("-n", server_ns, "route", "add", "224.0.0.0/4", "dev", f"vs{tag}"),
            ("-n", client_ns, "route", "add", "224.0.0.0/4", "dev", f"vc{tag}"),
        ]
        for step in steps:
            done = _ip(*step)
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr}"
        yield server_ns, client_ns
    finally:
        _ip("netns", "del", client_ns)
        _ip("netns", "del", server_ns)


def _in_ns(ns: str, *cmd: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_discover_sees_the_advertisement_from_another_namespace(namespaces: tuple[str, str], tmp_path: Path) -> None:
    server_ns, client_ns = namespaces
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_NODE_NAME": "desk-under-test"}
    key = subprocess.run([sys.executable, "-m", "deskml.cli.main", "keys", "create", "--name", "phone"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    assert key.stdout.startswith("dk_")
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, "-m", "deskml.cli.main", "serve", "--host", SERVER_IP,
         "--port", "11777"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = f"import socket; socket.create_connection(('{SERVER_IP}', 11777), timeout=1)"
        deadline = time.monotonic() + 60
        while _in_ns(server_ns, sys.executable, "-c", probe, env=env).returncode != 0:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server in the namespace did not start"
            time.sleep(0.3)
        found: list[dict[str, object]] = []
        for _ in range(3):  # multicast on a fresh link can take a moment to settle
            done = _in_ns(client_ns, sys.executable, "-m", "deskml.cli.main", "discover", "--json", "--timeout", "3",
                          env=env)
            assert done.returncode == 0, done.stderr
            found = json.loads(done.stdout)
            if found:
                break
        assert len(found) == 1, found
        entry = found[0]
        assert entry["name"] == "desk-under-test" and entry["port"] == 11777
        assert entry["addresses"] == [SERVER_IP] and entry["urls"] == [f"http://{SERVER_IP}:11777"]
        txt = entry["txt"]
        assert isinstance(txt, dict)
        assert txt["auth"] == "required" and txt["tls"] == "0" and txt["openai"] == "/v1" and txt["ollama"] == "/api"
        from deskml import __version__

        assert txt["version"] == __version__ and txt["node"] == "desk-under-test"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
