"""End to end: a `deskml serve` subprocess pulling from the local stand-in hub, driven by the
official `ollama` client and by the `deskml` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.conftest import ServerProcess
from tests.hub.conftest import REPO
from tests.hub.fakehub import FakeHub

pytestmark = pytest.mark.e2e


@pytest.fixture
def hub_server(tmp_path: Path, fake_hub: FakeHub, catalog_file: Path) -> Iterator[ServerProcess]:
    (tmp_path / "data").mkdir()
    proc = ServerProcess(tmp_path / "data", env={
        "DESKML_HF_ENDPOINT": fake_hub.url, "DESKML_CATALOG_FILE": str(catalog_file),
        "DESKML_DISK_RESERVE_MB": "0", "DESKML_PYPI_INDEX_URL": fake_hub.url + "/simple"})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _cli(*args: str, url: str = "", data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if url:
        env["DESKML_URL"] = url
    if data_dir is not None:
        env["DESKML_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_official_client_streaming_pull_shows_progress_then_chats(hub_server: ServerProcess, gguf_sha: str,
                                                                   gguf_bytes: bytes) -> None:
    client = ollama.Client(host=hub_server.url)
    updates = list(client.pull("tiny-chat", stream=True))
    assert updates[0].status == "pulling manifest"
    assert updates[-1].status == "success"
    progress = [u for u in updates if u.completed is not None]
    assert progress and progress[-1].completed == progress[-1].total == len(gguf_bytes)
    assert {u.digest for u in progress} == {f"sha256:{gguf_sha}"}
    assert "tiny-chat:latest" in {m.model for m in client.list().models}
    reply = client.chat(model="tiny-chat", messages=[{"role": "user", "content": "Say hi."}],
                        options={"num_predict": 8, "temperature": 0})
    assert reply.message.content.strip()
    single = client.pull(f"hf.co/{REPO}:Q4_K_M")  # non-streaming
    assert single.status == "success"
    with pytest.raises(ollama.ResponseError) as raised:
        client.pull("tiny-chta")
    assert raised.value.status_code == 404 and "did you mean tiny-chat:latest" in raised.value.error


def test_cli_pull_shows_progress_and_errors_in_one_line(hub_server: ServerProcess) -> None:
    done = _cli("pull", "tiny-pypi", url=hub_server.url)
    assert done.returncode == 0, done.stderr
    assert "success" in done.stdout and "pulling manifest" in done.stdout
    assert "MB" in done.stdout  # the progress bar's byte counts
    listed = _cli("list", url=hub_server.url)
    assert "tiny-pypi:latest" in listed.stdout
    failed = _cli("pull", "tiny-chta", url=hub_server.url)
    assert failed.returncode == 1
    assert "did you mean tiny-chat:latest" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1


def test_cli_search_du_export_import_round_trip(hub_server: ServerProcess, tmp_path: Path) -> None:
    assert _cli("pull", "tiny-chat", url=hub_server.url).returncode == 0
    assert _cli("cp", "tiny-chat", "tiny-copy", url=hub_server.url).returncode == 0
    data = tmp_path / "data"
    usage = _cli("du", data_dir=data)
    assert usage.returncode == 0 and "tiny-chat:latest" in usage.stdout and "tiny-copy:latest" in usage.stdout
    assert "in 1 blobs" in usage.stdout  # the copy shares the blob
    found = _cli("search", "whisper", data_dir=data)
    assert "whisper:base" in found.stdout and "whisper:tiny" in found.stdout and "llama" not in found.stdout
    tar = tmp_path / "models.tar"
    exported = _cli("export", "tiny-chat", "tiny-copy", "-o", str(tar), data_dir=data)
    assert exported.returncode == 0, exported.stderr
    offline = tmp_path / "offline"
    imported = _cli("import", str(tar), data_dir=offline)
    assert imported.returncode == 0 and "tiny-chat:latest" in imported.stdout
    assert "tiny-copy:latest" in _cli("du", data_dir=offline).stdout
    tar.write_bytes(tar.read_bytes()[:-20000] + b"\0" * 20000)  # damage the blob
    refused = _cli("import", str(tar), data_dir=tmp_path / "third")
    assert refused.returncode == 1 and "Error" in refused.stderr
