"""`deskml pair` after (or before) the README's `deskml keys create`: default key names never clash,
and `pair --json` on a loopback bind says why there is no URL and what to do."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.services.pairing import free_key_name
from tests.conftest import make_settings

pytestmark = pytest.mark.slow  # runs the deskml CLI as a subprocess

ROOT = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, *args: str, host: str = "0.0.0.0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESKML_DATA_DIR": str(tmp_path), "DESKML_HOST": host, "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def _readme_keys_create() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Securing deskml on your LAN", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    line = next(x for x in block.group(1).splitlines() if x.startswith("deskml keys create"))
    return shlex.split(line.split("#", 1)[0])[1:]


def test_free_key_name() -> None:
    assert free_key_name(set()) == "phone"
    assert free_key_name({"phone"}) == "phone-2"
    assert free_key_name({"phone", "phone-2", "phone-3"}) == "phone-4"
    assert free_key_name({"phone"}, "pixel") == "pixel"


def test_pair_then_the_readme_steps_then_pair_again(tmp_path: Path) -> None:
    first = _cli(tmp_path, "pair", "--json")
    assert first.returncode == 0, first.stderr
    assert "Created key phone " in first.stderr
    readme = _cli(tmp_path, *_readme_keys_create())  # the README's next step after pairing
    assert readme.returncode == 0, readme.stderr
    again = _cli(tmp_path, "pair", "--json")
    assert again.returncode == 0, again.stderr
    assert "Created key phone-2 " in again.stderr
    named = _cli(tmp_path, "pair", "--name", "pixel-8", "--json")
    assert named.returncode == 0 and "Created key pixel-8 " in named.stderr
    listed = _cli(tmp_path, "keys", "list")
    assert {"phone", "phone-2", "pixel-8"} <= set(re.findall(r"\b(phone(?:-2)?|pixel-8)\b", listed.stdout))
    # the docs say the same as the code
    pairing_doc = (ROOT / "docs" / "pairing.md").read_text()
    assert "phone-2" in pairing_doc and "phone-2" in (ROOT / "README.md").read_text()


def test_pair_json_on_loopback_says_why_and_the_fix(tmp_path: Path) -> None:
    done = _cli(tmp_path, "pair", "--json", host="127.0.0.1")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["urls"] == [] and payload["key"].startswith("dk_")
    assert "127.0.0.1" in payload["warning"]["reason"] and "cannot reach" in payload["warning"]["reason"]
    assert "--host 0.0.0.0" in payload["warning"]["fix"]
    text = _cli(tmp_path, "pair", host="127.0.0.1")  # the text output says the same
    assert text.returncode == 0 and "cannot reach" in text.stderr and "--host 0.0.0.0" in text.stderr
    shared = _cli(tmp_path, "pair", "--json", "--url", "http://10.1.2.3:11434", host="127.0.0.1")
    assert "warning" not in json.loads(shared.stdout)  # a URL the phone can use: nothing to warn about


def test_admin_pair_without_a_name_picks_a_free_one(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, host="127.0.0.1"))) as client:
        names = []
        for _ in range(2):
            reply = client.post("/api/admin/pair", json={"urls": ["http://10.1.2.3:11434"]})
            assert reply.status_code == 201, reply.text
            names.append(reply.json()["key_id"])
        listed = {k["id"]: k["name"] for k in client.get("/api/keys").json()["keys"]}
        assert [listed[key_id] for key_id in names] == ["phone", "phone-2"]
