"""Fill-in-the-middle: `suffix` on /v1/completions and /api/generate.

No bundled model has FIM tokens, so the test writes a copy of SmolLM2's GGUF whose metadata names
three of its special tokens as the FIM prefix/suffix/middle tokens. That checks what deskml owns:
finding the tokens, building `<PRE>prefix<SUF>suffix<MID>`, and llama.cpp reading it as special
tokens (three tokens, not their spelled-out text). Whether the 135M model writes a good middle is
not the point.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.runtime import fim
from deskml.runtime.gguf import GGUFInfo, _Reader, read_gguf
from tests.conftest import make_settings

FIM_IDS = {"tokenizer.ggml.fim_pre_token_id": 6, "tokenizer.ggml.fim_suf_token_id": 7,
           "tokenizer.ggml.fim_mid_token_id": 8}  # <filename>, <gh_stars>, <issue_start> in SmolLM2
_UINT32 = 4


def gguf_with_metadata(source: Path, target: Path, extra: dict[str, int]) -> None:
    """Copy a GGUF, adding uint32 metadata entries (tensor data offsets are relative, so they hold)."""
    with open(source, "rb") as handle:
        reader = _Reader(handle)
        head = reader.read(4 + 4)  # magic, version
        n_tensors, n_kv = reader.scalar("<Q"), reader.scalar("<Q")
        kv_start = handle.tell()
        alignment = 32
        for _ in range(n_kv):
            key = reader.string()
            value = reader.value(reader.scalar("<I"), keep_arrays=False)
            if key == "general.alignment":
                alignment = int(value)
        kv_end = handle.tell()
        for _ in range(n_tensors):
            reader.string()
            dims = reader.scalar("<I")
            handle.seek(8 * dims + 4 + 8, 1)
        infos_end = handle.tell()
        data_start = -(-infos_end // alignment) * alignment
        handle.seek(0)
        raw = handle.read(infos_end)
        added = b"".join(struct.pack("<Q", len(k)) + k.encode() + struct.pack("<II", _UINT32, v)
                         for k, v in extra.items())
        header = (head + struct.pack("<QQ", n_tensors, n_kv + len(extra)) + raw[kv_start:kv_end] + added
                  + raw[kv_end:infos_end])
        with open(target, "wb") as out:
            out.write(header + b"\0" * (-len(header) % alignment))
            handle.seek(data_start)
            while chunk := handle.read(1 << 24):
                out.write(chunk)


def test_fim_token_lookup() -> None:
    assert fim.fim_token_ids(GGUFInfo(metadata={})) is None
    legacy = {"tokenizer.ggml.prefix_token_id": 1, "tokenizer.ggml.suffix_token_id": 2,
              "tokenizer.ggml.middle_token_id": 3}
    assert fim.fim_token_ids(GGUFInfo(metadata=legacy)) == (1, 2, 3)
    assert fim.fim_token_ids(GGUFInfo(metadata={**legacy, "tokenizer.ggml.middle_token_id": -1})) is None
    assert fim.fim_prompt(("<P>", "<S>", "<M>"), "def f(", "    return x") == "<P>def f(<S>    return x<M>"


@pytest.fixture(scope="module")
def fim_client(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> TestClient:
    workdir = tmp_path_factory.mktemp("fim")
    target = workdir / "smollm2-fim.gguf"
    gguf_with_metadata(smollm2_gguf, target, FIM_IDS)
    info = read_gguf(target)
    assert fim.fim_token_ids(info) == (6, 7, 8) and info.parameter_count == read_gguf(smollm2_gguf).parameter_count
    with TestClient(create_app(make_settings(workdir / "data"))) as client:
        r = client.post("/api/create", json={"model": "smol-fim", "from": str(target), "stream": False})
        assert r.status_code == 200, r.text
        yield client


def prompt_tokens(client: TestClient, text: str) -> int:
    r = client.post("/v1/completions", json={"model": "smol-fim", "prompt": text, "max_tokens": 1, "temperature": 0})
    assert r.status_code == 200, r.text
    return int(r.json()["usage"]["prompt_tokens"])


@pytest.mark.slow  # the real model
def test_suffix_builds_a_fim_prompt(fim_client: TestClient) -> None:
    prefix, suffix = "def add(a, b):\n", "\n    return result\n"
    r = fim_client.post("/v1/completions", json={"model": "smol-fim", "prompt": prefix, "suffix": suffix,
                                                 "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    # Three special tokens around the two parts: llama.cpp read the marker texts as special tokens.
    assert body["usage"]["prompt_tokens"] == prompt_tokens(fim_client, prefix) + prompt_tokens(fim_client, suffix) + 3
    assert body["choices"][0]["finish_reason"] in {"stop", "length"}
    ollama = fim_client.post("/api/generate", json={"model": "smol-fim", "prompt": prefix, "suffix": suffix,
                                                    "stream": False, "options": {"num_predict": 8, "temperature": 0}})
    assert ollama.status_code == 200 and ollama.json()["done"] is True


def test_models_without_fim_tokens_refuse_suffix(fim_client: TestClient) -> None:
    r = fim_client.post("/v1/completions", json={"model": "smollm2", "prompt": "x", "suffix": "y"})
    assert r.status_code == 400 and "does not support insert" in r.json()["error"]["message"]
