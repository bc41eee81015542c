"""Speculative decoding on the real SmolLM2-135M (issue 18): it must not change what is produced.

At temperature 0 each mode's reply equals the reply without speculation, grammar-constrained output
(`format`, `response_format`, tools) stays valid and equal, the drafted/accepted counts are llama.cpp's
own, and the bundled model drafting for a copy of itself accepts nearly every draft (a correctness
check of the draft path, not a speed claim: bench/speculative_bench.py measures speed).
The settings' plumbing, with a fake engine, is tests/fast/test_fast_speculative.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import MODEL, make_settings

pytestmark = pytest.mark.slow

# Text the reply must repeat: what n-gram drafting is for (editing, extraction, quoting).
PANGRAMS = ("The quick brown fox jumps over the lazy dog. " * 3 + "Sphinx of black quartz, judge my vow. "
            "Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump!")
REPEAT = [{"role": "user", "content": f"Repeat this text exactly:\n\n{PANGRAMS}"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
# repeat_penalty 1.0: the default 1.1 punishes the very repetition the task asks for
EXACT = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 96, "seed": 1}
MODES = ("ngram_simple", "ngram_map_k", "ngram_mod", "draft")
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                                           "cities": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "age", "cities"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app whose `twin` is the bundled model with itself as DRAFT; the default model has no draft."""
    with TestClient(create_app(make_settings(tmp_path_factory.mktemp("spec"), cache=False))) as test_client:
        made = test_client.post("/api/create", json={"model": "twin", "stream": False,
                                                     "modelfile": f"FROM {MODEL}\nDRAFT {MODEL}\n"})
        assert made.status_code == 200, made.text
        yield test_client


def _chat(client: TestClient, messages: list[dict[str, Any]], mode: str, **extra: Any) -> dict[str, Any]:
    """The whole reply; `draft` runs on `twin` (the same weights), every other mode on the model itself."""
    model = "twin" if mode == "draft" else MODEL
    options = {**EXACT, **extra.pop("options", {}), "speculative": mode}
    reply = client.post("/api/chat", json={"model": model, "messages": messages, "stream": False,
                                           "options": options, **extra})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.mark.parametrize("messages", [REPEAT, STORY], ids=["repeat", "story"])
def test_at_temperature_0_every_mode_replies_exactly_as_without_speculation(
        client: TestClient, messages: list[dict[str, Any]]) -> None:
    plain = _chat(client, messages, "off")
    assert "draft_tokens" not in plain and plain["eval_count"] > 20
    for mode in MODES:
        sped = _chat(client, messages, mode)
        assert sped["message"]["content"] == plain["message"]["content"], mode
        assert sped["eval_count"] == plain["eval_count"] and sped["done_reason"] == plain["done_reason"], mode


def test_ngram_drafting_on_repeated_text_reports_llama_cpps_counts(client: TestClient) -> None:
    final = _chat(client, REPEAT, "ngram_simple")
    assert final["message"]["content"].startswith("The quick brown fox jumps over the lazy dog.")
    drafted, accepted = final["draft_tokens"], final["draft_accepted_tokens"]
    assert drafted >= 16 and 8 <= accepted <= drafted, final  # measured: 47 drafted, 31 accepted


def test_the_model_drafting_for_a_copy_of_itself_accepts_nearly_every_draft(client: TestClient) -> None:
    final = _chat(client, STORY, "draft")
    drafted, accepted = final["draft_tokens"], final["draft_accepted_tokens"]
    assert drafted >= 40 and accepted / drafted >= 0.85, final


@pytest.mark.parametrize("mode", ["ngram_simple", "draft"])
def test_constrained_output_stays_valid_and_unchanged(client: TestClient, mode: str) -> None:
    ask = [{"role": "user", "content": "Describe Ada Lovelace, 36, who lived in London, as JSON."}]
    plain = _chat(client, ask, "off", format=PERSON)
    sped = _chat(client, ask, mode, format=PERSON)
    assert sped["message"]["content"] == plain["message"]["content"]
    jsonschema.validate(json.loads(sped["message"]["content"]), PERSON)
    # OpenAI's response_format, through the same load
    schema = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    body = {"model": "twin" if mode == "draft" else MODEL, "messages": ask, "temperature": 0, "max_tokens": 96,
            "speculative": mode, "response_format": schema}
    openai = client.post("/v1/chat/completions", json=body)
    assert openai.status_code == 200, openai.text
    jsonschema.validate(json.loads(openai.json()["choices"][0]["message"]["content"]), PERSON)
    # tools: the call's arguments still follow the tool's schema
    question = [{"role": "system", "content": "You are a weather bot. Use the get_weather tool for every question."},
                {"role": "user", "content": "What is the weather in Paris?"}]
    called = _chat(client, question, mode, tools=[WEATHER])["message"]
    plain = _chat(client, question, "off", tools=[WEATHER])["message"]
    calls = called.get("tool_calls") or []
    assert [c["function"] for c in calls] == [c["function"] for c in plain.get("tool_calls") or []]
    assert called["content"] == plain["content"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"], called
    jsonschema.validate(calls[0]["function"]["arguments"], WEATHER["function"]["parameters"])


def test_the_metrics_count_drafted_and_accepted_tokens_per_model(client: TestClient) -> None:
    def counts() -> tuple[float, float]:
        text = client.get("/metrics").text
        found = {}
        for kind in ("drafted", "accepted"):
            prefix = f'deskml_speculative_{kind}_tokens_total{{model="{MODEL}"}} '
            values = [float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)]
            found[kind] = values[0] if values else 0.0
        return found["drafted"], found["accepted"]

    before = counts()
    final = _chat(client, REPEAT, "ngram_simple")
    after = counts()
    assert after == (before[0] + final["draft_tokens"], before[1] + final["draft_accepted_tokens"])


def test_another_mode_replaces_the_loaded_copy(client: TestClient) -> None:
    """`/api/ps` lists one copy per model; a request with another mode replaced it, so the list stays one long."""
    _chat(client, STORY, "ngram_map_k", options={"num_predict": 4})
    running = [(m["name"], m["speculative"]) for m in client.get("/api/ps").json()["models"]
               if m["name"].startswith("smollm2")]
    assert running == [(MODEL, "ngram_map_k")]
