"""Embeddings through the Ollama routes with service models, and rerank (Jina / Cohere shape)."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

QUERY = "How do I keep my cat from scratching the sofa?"
PASSAGES = [
    "The central bank raised interest rates by a quarter point on Tuesday.",
    "Give your cat a scratching post and trim its claws so it leaves the furniture alone.",
    "Tomatoes grow best in full sun with regular watering.",
]


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.parametrize(("model", "dims"), [("all-minilm", 384), ("wordllama", 256)])
def test_similar_sentences_score_higher_than_unrelated(svc_client: TestClient, model: str, dims: int) -> None:
    texts = ["A man is playing a guitar.", "Someone strums a guitar on stage.", "The stock market crashed today."]
    response = svc_client.post("/api/embed", json={"model": model, "input": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    vectors = body["embeddings"]
    assert len(vectors) == 3 and all(len(v) == dims for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vectors)  # unit length, as Ollama
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2
    assert body["prompt_eval_count"] > 0


def test_all_minilm_matches_its_published_behaviour(svc_client: TestClient) -> None:
    """Same input twice gives the same vector; batched and single requests agree."""
    single = svc_client.post("/api/embed", json={"model": "all-minilm", "input": "hello world"}).json()
    batch = svc_client.post("/api/embed", json={"model": "all-minilm:latest",
                                                "input": ["a much longer sentence to pad the batch", "hello world"]})
    assert batch.status_code == 200
    assert _cos(single["embeddings"][0], batch.json()["embeddings"][1]) > 0.9999


def test_legacy_embeddings_route_and_dimensions(svc_client: TestClient) -> None:
    legacy = svc_client.post("/api/embeddings", json={"model": "all-minilm", "prompt": "hello"})
    assert legacy.status_code == 200 and len(legacy.json()["embedding"]) == 384
    cut = svc_client.post("/api/embed", json={"model": "all-minilm", "input": ["hello"], "dimensions": 64})
    vector = cut.json()["embeddings"][0]
    assert len(vector) == 64 and abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-4


def test_too_long_input_without_truncate_is_400(svc_client: TestClient) -> None:
    long_text = "word " * 400
    refused = svc_client.post("/api/embed", json={"model": "all-minilm", "input": [long_text], "truncate": False})
    assert refused.status_code == 400 and "256" in refused.json()["error"]
    cut = svc_client.post("/api/embed", json={"model": "all-minilm", "input": [long_text]})
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == 256


def test_show_answers_for_service_models(svc_client: TestClient) -> None:
    import ollama

    client = ollama.Client(host="http://testserver")
    client._client = svc_client  # the official client's parsing, in process
    shown = client.show("all-minilm")
    assert shown.capabilities == ["embedding"] and shown.details.family == "bert"
    assert shown.license == "Apache-2.0" and "all-minilm" in (shown.modelfile or "")
    ocr = svc_client.post("/api/show", json={"model": "pp-ocrv4"}).json()
    assert ocr["capabilities"] == ["vision", "ocr"] and ocr["model_info"]["deskml.kind"] == "ocr"


def test_keep_alive_per_request_and_ps_for_embedding_models(svc_client: TestClient) -> None:
    import time
    from datetime import UTC, datetime

    def row() -> dict | None:
        return next((m for m in svc_client.get("/api/ps").json()["models"] if m["name"].startswith("wordllama")),
                    None)

    assert svc_client.post("/api/embed", json={"model": "wordllama", "input": "hi", "keep_alive": "10m"}).status_code \
        == 200
    loaded = row()
    assert loaded is not None and loaded["kind"] == "embedding" and loaded["size"] > 0
    left = datetime.fromisoformat(loaded["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)
    assert 540 < left.total_seconds() <= 600
    # keep_alive 0: unloaded as soon as it is idle (the reaper looks every second)
    svc_client.post("/api/embed", json={"model": "wordllama", "input": "hi", "keep_alive": 0})
    deadline = time.monotonic() + 5
    while row() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row() is None
    # negative: kept for ever, shown as Ollama shows it
    svc_client.post("/api/embed", json={"model": "wordllama", "input": "hi", "keep_alive": -1})
    assert row()["expires_at"].startswith("2318-")


@pytest.mark.parametrize("path", ["/v1/rerank", "/api/rerank"])
def test_rerank_puts_the_relevant_passage_first(svc_client: TestClient, path: str) -> None:
    response = svc_client.post(path, json={
        "model": "all-minilm", "query": QUERY, "documents": [PASSAGES[0], {"text": PASSAGES[1]}, PASSAGES[2]],
        "top_n": 2,
    })
    assert response.status_code == 200, response.text
    body = response.json()
    results = body["results"]
    assert results[0]["index"] == 1 and len(results) == 2
    assert results[0]["document"] == {"text": PASSAGES[1]}
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    assert body["model"] == "all-minilm" and body["usage"]["total_tokens"] > 0


def test_rerank_default_model_and_no_documents_returned(svc_client: TestClient) -> None:
    body = svc_client.post("/v1/rerank", json={"query": QUERY, "documents": PASSAGES,
                                               "return_documents": False}).json()
    assert body["results"][0]["index"] == 1 and len(body["results"]) == 3
    assert all("document" not in r for r in body["results"])


def test_rerank_errors_in_each_dialect(svc_client: TestClient) -> None:
    openai = svc_client.post("/v1/rerank", json={"query": QUERY, "documents": []})
    assert openai.status_code == 400 and openai.json()["error"]["type"] == "invalid_request_error"
    ollama = svc_client.post("/api/rerank", json={"query": "  ", "documents": ["x"]})
    assert ollama.status_code == 400 and "query" in ollama.json()["error"]
    unknown = svc_client.post("/api/rerank", json={"model": "nope", "query": "q", "documents": ["x"]})
    assert unknown.status_code == 404


def test_service_models_are_listed_in_tags(svc_client: TestClient) -> None:
    models = {m["name"]: m for m in svc_client.get("/api/tags").json()["models"]}
    for name, fmt in [("all-minilm:latest", "safetensors"), ("wordllama:latest", "safetensors"),
                      ("efficientnet-lite0:latest", "onnx"), ("pp-ocrv4:latest", "onnx"),
                      ("yolov3-tiny:latest", "darknet")]:
        assert models[name]["details"]["format"] == fmt
        assert models[name]["size"] > 1_000_000
        assert len(models[name]["digest"]) == 64
    assert models["all-minilm:latest"]["details"]["family"] == "bert"


def test_official_openai_client_embeddings_with_all_minilm(svc_client: TestClient) -> None:
    import openai

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=svc_client)
    reply = client.embeddings.create(model="all-minilm", input=["A man plays guitar.", "Someone strums a guitar.",
                                                                  "Interest rates rose."])
    vectors = [item.embedding for item in reply.data]
    assert [item.index for item in reply.data] == [0, 1, 2] and len(vectors[0]) == 384
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
