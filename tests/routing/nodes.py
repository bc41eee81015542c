"""Real deskml node subprocesses for the scale-out tests: start nodes and routers, send a load of chats
through them, and read from a router's /metrics who answered."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ServerProcess, free_port
from tests.routing.conftest import wait_for

CHAT = {"options": {"num_predict": 6, "temperature": 0}}


def start_node(data_dir: Path, env: dict[str, str] | None = None, name: str | None = None) -> ServerProcess:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    # one inference thread per node: several nodes share the test machine's cores
    extra = {"DESKML_PORT": str(port), "DESKML_NUM_THREADS": "1", **({"DESKML_NODE_NAME": name} if name else {}),
             **(env or {})}
    proc = ServerProcess(data_dir, env=extra)
    proc.port, proc.url = port, f"http://127.0.0.1:{port}"
    proc.wait_ready(90)
    return proc


def start_router(data_dir: Path, nodes: dict[str, ServerProcess], *, forward_only: bool = False,
                 router: str = "health_interval = 3\nopen_seconds = 5\n") -> ServerProcess:
    """A router node listing `nodes` as deskml upstreams with their own names (prefix ""), as docs/scale.md says."""
    data_dir.mkdir(parents=True, exist_ok=True)
    toml = f"[router]\n{router}" + "".join(
        f'[[upstreams]]\nname = "{name}"\nkind = "deskml"\nurl = "{node.url}"\nprefix = ""\n'
        for name, node in nodes.items())
    path = data_dir / "upstreams.toml"
    path.write_text(toml, "utf-8")
    env = {"DESKML_UPSTREAMS_FILE": str(path), "DESKML_FORWARD_ONLY": "true" if forward_only else "false"}
    proc = start_node(data_dir, env, name="router")

    def all_up() -> bool:
        backends = httpx.get(proc.url + "/api/admin/upstreams", timeout=5).json()["backends"]
        return all(b["up"] for b in backends if b["name"] != "local")

    wait_for(all_up, timeout=30, what="the router to see its upstreams")
    return proc


def answered(router: ServerProcess, outcome: str = "ok") -> dict[str, int]:
    """Requests per backend ('local' or an upstream) with `outcome`, from the router's Prometheus counters."""
    text = httpx.get(router.url + "/metrics", timeout=10).text
    found: dict[str, int] = {}
    for labels, value in re.findall(r"^deskml_upstream_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("outcome") == outcome:
            found[pairs["upstream"]] = found.get(pairs["upstream"], 0) + int(float(value))
    return found


def chat_once(url: str, model: str, stream: bool, content: str) -> str | None:
    """One chat; None when it arrived whole, else what went wrong (as the client saw it)."""
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": content}], **CHAT}
    try:
        if not stream:
            reply = httpx.post(url + "/api/chat", json=body, timeout=300)
            if reply.status_code != 200:
                return f"{reply.status_code}: {reply.text[:200]}"
            return None if reply.json().get("done") else "not done"
        with httpx.stream("POST", url + "/api/chat", json=body, timeout=300) as response:
            if response.status_code != 200:
                return f"{response.status_code}: {response.read().decode()[:200]}"
            lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not lines or "error" in lines[-1] or not lines[-1].get("done"):
        return f"stream ended with {lines[-1] if lines else 'nothing'}"
    return None


@dataclass
class Load:
    sent: int = 0
    failures: list[str] = field(default_factory=list)


def run_load(url: str, model: str, *, stream: bool, clients: int, each: int, on_done: Any = None) -> Load:
    """`clients` concurrent clients sending `each` chats one after another; `on_done(n)` after every reply."""
    load = Load()
    lock = threading.Lock()

    def client(index: int) -> None:
        for turn in range(each):
            problem = chat_once(url, model, stream, f"Say a word. ({index}.{turn})")
            with lock:
                load.sent += 1
                if problem is not None:
                    load.failures.append(problem)
                sent = load.sent
            if on_done is not None:
                on_done(sent)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return load
