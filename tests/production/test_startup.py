"""Starting up: the banner names the web UI (and its LAN URLs), migrations are quiet unless they
change something, and docs/deploy.md's "One container" sequence works as written (its deskml
commands run against a data dir with the Dockerfile's settings, as the container would)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deskml import server as server_module
from deskml.services.db import Database
from deskml.settings import Settings
from tests.conftest import free_port, make_settings

ROOT = Path(__file__).resolve().parents[2]


def test_banner_names_the_web_ui_on_loopback(tmp_path: Path) -> None:
    text = server_module.banner(make_settings(tmp_path, host="127.0.0.1", port=11434), [])
    assert "  web UI: http://127.0.0.1:11434/ui" in text.splitlines()
    assert "web UI from another device" not in text


def test_banner_names_the_lan_web_ui_when_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "lan_addresses", lambda: ["192.168.1.20", "10.0.0.5"])
    text = server_module.banner(make_settings(tmp_path, host="0.0.0.0", port=8080), [])
    lines = text.splitlines()
    assert "  web UI: http://127.0.0.1:8080/ui" in lines  # 0.0.0.0 is not an address a browser opens
    assert "  web UI from another device: http://192.168.1.20:8080/ui, http://10.0.0.5:8080/ui" in lines
    assert "  from a phone on this network use: http://192.168.1.20:8080, http://10.0.0.5:8080" in lines
    one = server_module.banner(make_settings(tmp_path, host="192.168.1.20", port=8080), []).splitlines()
    assert "  web UI: http://192.168.1.20:8080/ui" in one  # bound to one address: only that one
    assert "  web UI from another device: http://192.168.1.20:8080/ui" in one


def test_migrations_log_only_what_they_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings: Settings = make_settings(tmp_path)
    caplog.set_level(logging.INFO)
    db = Database(settings.database_url or f"sqlite:///{tmp_path / 'deskml.db'}")
    try:
        db.migrate()
        first = [r for r in caplog.records if r.levelno >= logging.INFO]
        assert not [r for r in first if r.name.startswith("alembic")], [r.getMessage() for r in first]
        assert [r.name for r in first] == ["deskml.db"] and "created the schema" in first[0].getMessage()
        caplog.clear()
        db.migrate()  # nothing to do: nothing said
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []
    finally:
        db.close()


def _one_container_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## One container", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("  #", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(DESKML_\w+)=(\S+)", line)))
    return env


def _after_image(argv: list[str]) -> list[str]:
    """What a `docker run ... deskml [CMD...]` runs: the words after the image, else the image's CMD."""
    words, i = argv[2:], 0
    while i < len(words) and words[i].startswith("-"):
        i += 1 if words[i] in {"--rm", "-d", "-it", "-i", "-t"} else 2
    rest = words[i + 1:]  # words[i] is the image
    return rest or ["deskml", "serve"]


@pytest.mark.slow  # the deskml CLI as subprocesses
def test_one_container_sequence_from_the_docs_works(tmp_path: Path) -> None:
    commands = _one_container_commands()
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    assert len(runs) == 2 and "-d" not in runs[0] and "-d" in runs[1]  # the key first, then the server
    create, serve = _after_image(runs[0]), _after_image(runs[1])
    assert create[:3] == ["deskml", "keys", "create"] and serve == ["deskml", "serve"]
    curl = next(c for c in commands if c[0] == "curl")
    port = free_port()
    env = {**os.environ, **_dockerfile_env(), "DESKML_DATA_DIR": str(tmp_path), "DESKML_PORT": str(port),
           "DESKML_MDNS": "off", "COLUMNS": "200"}
    assert env["DESKML_HOST"] == "0.0.0.0"  # the container's bind, which is why the key comes first
    made = subprocess.run([sys.executable, "-m", "deskml.cli.main", *create[1:]], env=env, capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("dk_")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "deskml.cli.main", *serve[1:]], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        url = curl[-1].replace("localhost:11434", f"127.0.0.1:{port}")
        header = curl[curl.index("-H") + 1].replace("<key>", key)
        name, value = (part.strip() for part in header.split(":", 1))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                answer = httpx.get(url, headers={name: value}, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        assert answer.status_code == 200 and "models" in answer.json()
        assert httpx.get(url, timeout=5).status_code == 401  # bound to 0.0.0.0: a key is needed
        text = log_path.read_text()
        assert f"web UI: http://127.0.0.1:{port}/ui" in text
        assert "alembic" not in text  # `keys create` made the schema; this start changed nothing
    finally:
        proc.terminate()
        proc.wait(timeout=30)
