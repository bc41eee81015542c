"""Ollama dialect over HTTP, in process, against the real SmolLM2-135M model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MODEL

DET = {"temperature": 0, "num_predict": 24}


def ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.iter_lines() if line.strip()]


def test_root_and_version(app_client: TestClient) -> None:
    root = app_client.get("/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert app_client.head("/").status_code == 200
    version = app_client.get("/api/version").json()
    assert version["version"].count(".") == 2 and version["deskml"]


def test_generate_non_stream_has_ollama_fields(app_client: TestClient) -> None:
    r = app_client.post("/api/generate", json={"model": "smollm2", "prompt": "Name a color.", "stream": False,
                                                "options": DET})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == MODEL and body["done"] is True and body["done_reason"] in {"stop", "length"}
    assert isinstance(body["response"], str) and body["response"].strip()
    assert body["created_at"].endswith("Z") and "T" in body["created_at"]
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                "eval_duration"):
        assert isinstance(body[key], int), key
    assert 0 < body["eval_count"] <= 24
    assert body["total_duration"] >= body["eval_duration"] > 0


def test_generate_streams_ndjson_by_default(app_client: TestClient) -> None:
    with app_client.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "Count: 1, 2, 3,",
                                                           "options": DET}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = ndjson(r)
    assert len(lines) > 3
    assert all(not line["done"] for line in lines[:-1])
    assert lines[-1]["done"] is True and lines[-1]["response"] == ""
    text = "".join(line["response"] for line in lines)
    assert text.strip()
    assert lines[-1]["eval_count"] >= len(lines) - 2


def test_chat_message_always_has_role(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json={"model": MODEL, "stream": False, "options": DET, "messages": [
        {"role": "user", "content": "Hello! My name is Ivan."},
        {"role": "assistant", "content": "Hello, Ivan!"},
        {"role": "user", "content": "What is my name?"}]})
    assert r.status_code == 200
    body = r.json()
    assert body["message"]["role"] == "assistant"
    assert "ivan" in body["message"]["content"].lower()
    with app_client.stream("POST", "/api/chat", json={"model": MODEL, "options": DET,
                                                       "messages": [{"role": "user", "content": "Hi"}]}) as r:
        lines = ndjson(r)
    assert all(line["message"]["role"] == "assistant" for line in lines)
    assert lines[-1]["done"] and lines[-1]["done_reason"] in {"stop", "length"}


def test_num_predict_and_length_reason(app_client: TestClient) -> None:
    body = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "Write a long story about a dragon.", "stream": False,
        "options": {"num_predict": 5, "temperature": 0}}).json()
    assert body["eval_count"] == 5 and body["done_reason"] == "length"


def test_seed_makes_sampling_repeatable(app_client: TestClient) -> None:
    req = {"model": MODEL, "prompt": "Invent a name for a cat.", "stream": False,
           "options": {"temperature": 1.0, "seed": 42, "num_predict": 20}}
    first = app_client.post("/api/generate", json=req).json()["response"]
    second = app_client.post("/api/generate", json=req).json()["response"]
    assert first == second
    other = app_client.post("/api/generate", json={**req, "options": {**req["options"], "seed": 7}}).json()
    assert other["response"]  # a different seed still answers (usually differently)


def test_stop_sequence_cuts_reply(app_client: TestClient) -> None:
    body = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "List the numbers from 1 to 10 separated by commas.", "stream": False,
        "options": {"temperature": 0, "num_predict": 60, "stop": ["5"]}}).json()
    assert "5" not in body["response"] and "6" not in body["response"]
    assert body["done_reason"] == "stop"


def test_format_json_parses(app_client: TestClient) -> None:
    body = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "Describe a cat as JSON with name and age.", "stream": False,
        "format": "json", "options": {"temperature": 0, "num_predict": 80}}).json()
    assert isinstance(json.loads(body["response"]), dict)


def test_format_schema_is_enforced(app_client: TestClient) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    body = app_client.post("/api/chat", json={
        "model": MODEL, "stream": False, "format": schema, "options": {"temperature": 0, "num_predict": 80},
        "messages": [{"role": "user", "content": "Tell me about a person."}]}).json()
    value = json.loads(body["message"]["content"])
    assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_logprobs_per_token_with_alternatives(app_client: TestClient) -> None:
    # repeat_penalty 1 so that greedy decoding picks exactly the most likely token of the raw distribution
    body = {"model": MODEL, "prompt": "Name a color.", "stream": False, "logprobs": True, "top_logprobs": 3,
            "options": {"temperature": 0, "num_predict": 8, "repeat_penalty": 1.0}}
    reply = app_client.post("/api/generate", json=body).json()
    logprobs = reply["logprobs"]
    assert len(logprobs) == reply["eval_count"]
    assert "".join(entry["token"] for entry in logprobs) == reply["response"]
    for entry in logprobs:
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode("utf-8", "replace")
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == 3
        assert [a["logprob"] for a in alternatives] == sorted((a["logprob"] for a in alternatives), reverse=True)
        # at temperature 0 the chosen token is the most likely one
        assert alternatives[0]["token"] == entry["token"]
        assert alternatives[0]["logprob"] == pytest.approx(entry["logprob"], abs=1e-4)
    # streamed: each line carries its own tokens; without top_logprobs no alternatives
    with app_client.stream("POST", "/api/chat", json={
            "model": MODEL, "logprobs": True, "options": {"temperature": 0, "num_predict": 8},
            "messages": [{"role": "user", "content": "Name a color."}]}) as r:
        lines = ndjson(r)
    streamed = [entry for line in lines[:-1] for entry in line["logprobs"]]
    assert "".join(e["token"] for e in streamed) == "".join(line["message"]["content"] for line in lines)
    assert streamed and all("top_logprobs" not in e for e in streamed)
    plain = app_client.post("/api/generate", json={**body, "logprobs": False}).json()
    assert "logprobs" not in plain
    too_many = app_client.post("/api/generate", json={**body, "top_logprobs": 21})
    assert too_many.status_code == 400 and "top_logprobs" in too_many.json()["error"]


def test_unicode_roundtrips_unescaped(app_client: TestClient) -> None:
    r = app_client.post("/api/chat", json={
        "model": MODEL, "stream": False, "options": {"temperature": 0, "num_predict": 30},
        "messages": [{"role": "user", "content": "Повтори: Привет, мир! 😀"}]})
    assert r.status_code == 200
    assert "\\u" not in r.text  # not JSON-escaped on the wire
    r2 = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "Say exactly: Привет", "raw": False, "stream": False,
        "options": {"temperature": 0, "num_predict": 30, "stop": ["\n"]}})
    assert "\\u04" not in r2.text


def test_raw_prompt_skips_template(app_client: TestClient) -> None:
    body = app_client.post("/api/generate", json={
        "model": MODEL, "prompt": "The capital of France is", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 6}}).json()
    assert "paris" in body["response"].lower()
    assert body["prompt_eval_count"] <= 8  # only the raw words, no chat template around them


def test_empty_prompt_loads_and_keep_alive_zero_unloads(app_client: TestClient) -> None:
    body = app_client.post("/api/generate", json={"model": MODEL}).json()
    assert body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    ps = app_client.get("/api/ps").json()["models"]
    assert any(m["name"] == MODEL for m in ps)
    body = app_client.post("/api/chat", json={"model": MODEL, "messages": [], "keep_alive": 0}).json()
    assert body["done_reason"] == "unload" and body["message"]["role"] == "assistant"
    assert not any(m["name"] == MODEL for m in app_client.get("/api/ps").json()["models"])


def test_ps_reports_expiry_and_slots(app_client: TestClient) -> None:
    app_client.post("/api/generate", json={"model": MODEL, "keep_alive": "10m"})
    model = next(m for m in app_client.get("/api/ps").json()["models"] if m["name"] == MODEL)
    assert model["expires_at"].endswith("Z") and model["context_length"] == 2048
    assert model["slots"] == 2 and model["running"] == 0 and model["queued"] == 0
    assert model["size"] > 90_000_000 and model["details"]["quantization_level"] == "Q4_1"


def test_tags_and_show(app_client: TestClient) -> None:
    tags = app_client.get("/api/tags").json()["models"]
    smol = next(m for m in tags if m["name"] == MODEL)
    assert smol["model"] == MODEL and len(smol["digest"]) == 64 and smol["size"] > 90_000_000
    assert smol["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                               "parameter_size": "134.52M", "quantization_level": "Q4_1"}
    show = app_client.post("/api/show", json={"model": "smollm2"}).json()
    assert show["model_info"]["llama.context_length"] == 8192
    assert show["model_info"]["general.architecture"] == "llama"
    assert "<|im_start|>" in show["template"]
    assert "FROM " in show["modelfile"] and "completion" in show["capabilities"]


def test_create_copy_delete(app_client: TestClient, smollm2_gguf: Path) -> None:
    r = app_client.post("/api/create", json={
        "model": "pirate", "from": "smollm2", "system": "You are a pirate. Always say Arr.",
        "parameters": {"temperature": 0.2, "stop": ["User:"], "num_ctx": 1024}, "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}
    show = app_client.post("/api/show", json={"model": "pirate"}).json()
    assert show["system"].startswith("You are a pirate")
    assert "temperature" in show["parameters"] and show["details"]["parent_model"] == MODEL
    assert 'SYSTEM """You are a pirate' in show["modelfile"]
    # the Modelfile's num_ctx shapes the loaded context
    app_client.post("/api/generate", json={"model": "pirate"})
    loaded = next(m for m in app_client.get("/api/ps").json()["models"] if m["name"] == "pirate:latest")
    assert loaded["context_length"] == 1024
    assert app_client.post("/api/copy", json={"source": "pirate", "destination": "pirate2:v1"}).status_code == 200
    names = [m["name"] for m in app_client.get("/api/tags").json()["models"]]
    assert "pirate:latest" in names and "pirate2:v1" in names
    assert app_client.request("DELETE", "/api/delete", json={"model": "pirate2:v1"}).status_code == 200
    assert app_client.request("DELETE", "/api/delete", json={"model": "pirate2:v1"}).status_code == 404
    assert app_client.request("DELETE", "/api/delete", json={"model": "pirate"}).status_code == 200


def test_create_from_uploaded_blob_with_legacy_modelfile(app_client: TestClient, smollm2_gguf: Path) -> None:
    import hashlib

    data = smollm2_gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert app_client.head(f"/api/blobs/{digest}").status_code == 404
    bad = app_client.post("/api/blobs/sha256:" + "0" * 64, content=b"not this")
    assert bad.status_code == 400
    assert app_client.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert app_client.head(f"/api/blobs/{digest}").status_code == 200
    r = app_client.post("/api/create", json={"model": "uploaded", "files": {"smol.gguf": digest}, "stream": True})
    statuses = [json.loads(line)["status"] for line in r.iter_lines() if line]
    assert statuses[-1] == "success"
    legacy = app_client.post("/api/create", json={
        "name": "legacy", "modelfile": "FROM uploaded\nPARAMETER temperature 0\nSYSTEM Be brief.", "stream": False})
    assert legacy.status_code == 200
    show = app_client.post("/api/show", json={"name": "legacy"}).json()
    assert show["system"] == "Be brief." and "temperature" in show["parameters"]
    reply = app_client.post("/api/generate", json={"model": "legacy", "prompt": "Hi", "stream": False,
                                                   "options": {"num_predict": 5}}).json()
    assert reply["done"] is True
    for name in ("legacy", "uploaded"):
        app_client.request("DELETE", "/api/delete", json={"model": name})


def test_embed_and_legacy_embeddings(app_client: TestClient) -> None:
    r = app_client.post("/api/embed", json={"model": MODEL, "input": ["The cat sat on the mat.", "Кошка"]})
    assert r.status_code == 200
    body = r.json()
    assert len(body["embeddings"]) == 2 and len(body["embeddings"][0]) == 576
    assert body["prompt_eval_count"] > 0 and body["total_duration"] > 0
    norm = sum(v * v for v in body["embeddings"][0]) ** 0.5
    assert abs(norm - 1.0) < 1e-3
    one = app_client.post("/api/embed", json={"model": MODEL, "input": "The cat sat on the mat."}).json()
    assert one["embeddings"][0] == pytest.approx(body["embeddings"][0], abs=1e-4)
    legacy = app_client.post("/api/embeddings", json={"model": MODEL, "prompt": "The cat sat on the mat."}).json()
    assert legacy["embedding"] == pytest.approx(body["embeddings"][0], abs=1e-4)
    assert app_client.post("/api/embeddings", json={"model": MODEL, "prompt": ""}).json() == {"embedding": []}
    short = app_client.post("/api/embed", json={"model": MODEL, "input": "x", "dimensions": 64}).json()
    assert len(short["embeddings"][0]) == 64


# bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/api/generate", b"{not json", 400, "invalid JSON"),
        ("/api/chat", b'{"messages": []}', 400, "model is required"),
        ("/api/generate", b'{"model": "smollm2", "prompt": 5}', 400, "prompt"),
        ("/api/chat", b'{"model": "smollm2", "messages": "hi"}', 400, "messages"),
        ("/api/generate", b'{"model": "nope:1b", "prompt": "hi"}', 404, "model 'nope:1b' not found"),
        ("/api/chat", b'{"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        ("/api/generate", b'{"model": "smollm2", "prompt": "hi", "format": "yaml"}', 400, "format"),
        ("/api/generate", b'{"model": "smollm2", "prompt": "hi", "keep_alive": "soon"}', 400, "duration"),
        ("/api/generate", b'{"model": "../../etc/passwd", "prompt": "hi"}', 400, "invalid model name"),
        ("/api/show", b'{"model": "ghost"}', 404, "not found"),
        ("/api/create", b'{"model": "x", "from": "ghost"}', 404, "not found"),
        ("/api/chat", b'{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], '
                      b'"format": {"type": "nonsense"}}', 400, "schema"),
    ],
)
def test_bad_requests_are_4xx_in_ollama_shape(app_client: TestClient, path: str, body: bytes, status: int,
                                              needle: str) -> None:
    r = app_client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and needle.lower() in error.lower()


def test_prompt_longer_than_context(app_client: TestClient) -> None:
    long_prompt = "word " * 3000
    r = app_client.post("/api/generate", json={"model": MODEL, "prompt": long_prompt, "stream": False})
    assert r.status_code == 400 and "context" in r.json()["error"]
    r = app_client.post("/api/generate", json={"model": MODEL, "prompt": long_prompt, "stream": False,
                                               "truncate": True, "options": {"num_predict": 3}})
    assert r.status_code == 200 and r.json()["done"]
    history = [{"role": "user", "content": "word " * 700} for _ in range(4)]
    r = app_client.post("/api/chat", json={"model": MODEL, "messages": history, "stream": False,
                                           "truncate": True, "options": {"num_predict": 3}})
    assert r.status_code == 200


def test_unknown_options_are_ignored(app_client: TestClient) -> None:
    r = app_client.post("/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                               "options": {"num_predict": 3, "num_gpu": 99, "made_up": 1},
                                               "surprise_field": True})
    assert r.status_code == 200 and r.json()["eval_count"] == 3


def test_curl_style_body_without_json_content_type(app_client: TestClient) -> None:
    """`curl -d '{...}'` sends form encoding; Ollama still reads the body as JSON, and so do we."""
    body = json.dumps({"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        r = app_client.post("/api/generate", content=body, headers=headers)
        assert r.status_code == 200, (content_type, r.text)
        assert r.json()["eval_count"] == 3


def test_body_over_limit_is_413_before_read(tmp_path) -> None:
    from deskml.app import create_app
    from tests.conftest import make_settings

    with TestClient(create_app(make_settings(tmp_path, max_upload_mb=0.001))) as small:
        big = b'{"model": "smollm2", "prompt": "' + b"x" * 5000 + b'"}'
        r = small.post("/api/generate", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]

        def chunks():
            for _ in range(10):
                yield b"x" * 1000

        r = small.post("/api/chat", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "limit" in r.json()["error"]
