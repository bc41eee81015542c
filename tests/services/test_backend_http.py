"""The seed's /health and /api/llm/generate, shaped as its Dart MLBackendService reads them."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_health_shape(svc_client: TestClient) -> None:
    response = svc_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    services = body["services"]
    assert services["llm"] is True and services["vision"] is True and services["embeddings"] is True
    assert all(isinstance(v, bool) for v in services.values())
    assert body["models"]["llm"][0]["name"] == "smollm2:135m"
    assert {m["name"] for m in body["models"]["classify"]} >= {"efficientnet-lite0"}


def test_health_reflects_loaded_models(svc_client: TestClient) -> None:
    svc_client.post("/api/embed", json={"model": "wordllama", "input": ["load me"]})
    embedding = {m["name"]: m for m in svc_client.get("/health").json()["models"]["embedding"]}
    assert embedding["wordllama"]["loaded"] is True


def test_llm_generate_with_the_default_model(svc_client: TestClient) -> None:
    response = svc_client.post("/api/llm/generate", json={"prompt": "Say hello in one word.", "max_length": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["model"] == "smollm2:135m"
    assert isinstance(body["text"], str) and body["text"].strip()
    assert isinstance(body["time"], float) and body["time"] >= 0


def test_llm_generate_errors_are_seed_shaped(svc_client: TestClient) -> None:
    empty = svc_client.post("/api/llm/generate", json={"prompt": "", "max_length": 10})
    assert empty.status_code == 400 and empty.json()["success"] is False and "prompt" in empty.json()["error"]
    bad = svc_client.post("/api/llm/generate", json={"prompt": "hi", "max_length": "lots"})
    assert bad.status_code == 400 and bad.json()["success"] is False
    not_json = svc_client.post("/api/llm/generate", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["success"] is False
    unknown = svc_client.post("/api/llm/generate", json={"prompt": "hi", "model": "no-such-llm"})
    assert unknown.status_code == 404 and unknown.json() == {"success": False, "error": unknown.json()["error"]}
