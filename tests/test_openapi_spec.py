"""The OpenAPI document lists the statuses deskml really answers, and OPTIONS/HEAD/405 tell a path's methods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app without its lifespan: routing, middleware and the document need no model."""
    yield TestClient(create_app(make_settings(Path(tmp_path_factory.mktemp("data")))))


@pytest.fixture(scope="module")
def spec(bare: TestClient) -> dict[str, Any]:
    reply = bare.get("/openapi.json")
    assert reply.status_code == 200
    return reply.json()


def _statuses(spec: dict[str, Any], method: str, path: str) -> set[str]:
    return set(spec["paths"][path][method]["responses"])


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("post", "/api/chat", {"200", "400", "401", "403", "404", "413", "429", "501", "503"}),
    ("post", "/v1/chat/completions", {"200", "400", "401", "403", "404", "413", "429", "501", "503"}),
    ("get", "/v1/models/{model_id}", {"200", "400", "401", "403", "404", "429", "503"}),
    ("post", "/api/keys", {"201", "400", "401", "403", "409", "413", "429", "503"}),
    ("post", "/api/vision/classify", {"200", "400", "401", "403", "404", "413", "429", "501", "503"}),
    ("get", "/api/version", {"200", "403", "503"}),  # public, rate-limit exempt, no input
    ("get", "/health", {"200", "403", "503"}),
    ("post", "/login", {"200", "400", "401", "403", "413", "429", "501", "503"}),
])
def test_operations_list_their_error_statuses(spec: dict[str, Any], method: str, path: str,
                                              expected: set[str]) -> None:
    assert expected <= _statuses(spec, method, path)


def test_no_operation_claims_422_and_body_less_routes_claim_no_413(spec: dict[str, Any]) -> None:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if "requestBody" not in operation:
                assert "413" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "404" not in _statuses(spec, "get", "/api/tags")  # lists models, names none


def test_error_bodies_follow_the_dialect(spec: dict[str, Any]) -> None:
    def ref(path: str, method: str, status: str) -> str:
        return spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]

    assert ref("/api/chat", "post", "400").endswith("/OllamaError")
    assert ref("/v1/embeddings", "post", "400").endswith("/OpenAIError")
    assert ref("/api/llm/generate", "post", "400").endswith("/BackendError")
    schemas = spec["components"]["schemas"]
    assert schemas["OllamaError"]["required"] == ["error"]
    assert set(schemas["OpenAIErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    assert schemas["BackendError"]["properties"]["success"] == {"const": False, "title": "Success",
                                                                "type": "boolean"}


def test_validation_errors_are_400_in_the_dialects_shape(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as started:
        reply = started.post("/v1/embeddings", json={})
        assert reply.status_code == 400
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        reply = started.post("/api/llm/generate", json={})
        assert reply.status_code == 400 and reply.json()["success"] is False


def test_a_request_before_start_up_is_a_503_not_a_500(bare: TestClient) -> None:
    reply = bare.post("/v1/embeddings", json={"model": "all-minilm", "input": "hi"})
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert reply.json()["error"]["message"] == "the server is starting or stopping"


def test_success_content_types_include_streams_and_audio(spec: dict[str, Any]) -> None:
    def content(path: str, method: str) -> set[str]:
        responses = spec["paths"][path][method]["responses"]
        return set(responses[next(c for c in responses if c.startswith("2"))].get("content", {}))

    assert content("/api/chat", "post") == {"application/json", "application/x-ndjson"}
    assert content("/v1/chat/completions", "post") == {"application/json", "text/event-stream"}
    assert "audio/mpeg" in content("/v1/audio/speech", "post")
    assert content("/api/blobs/{digest}", "head") == set()


def test_request_rules_the_handlers_check_are_in_the_schema(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["model"]["minLength"] == 1
    assert schemas["ModelRequest"]["anyOf"] == [{"required": ["model"]}, {"required": ["name"]}]
    multipart = spec["paths"]["/api/vision/ocr"]["post"]["requestBody"]["content"]["multipart/form-data"]
    body = schemas[multipart["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert "image" in body["required"] and body["properties"]["image"]["format"] == "binary"


def test_plain_options_lists_the_paths_methods(bare: TestClient) -> None:
    reply = bare.options("/api/keys")
    assert reply.status_code == 204
    assert reply.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    reply = bare.options("/v1/files/file-abc")
    assert reply.status_code == 204 and reply.headers["allow"] == "GET, HEAD, DELETE, OPTIONS"
    assert bare.options("/api/no-such-route").status_code == 404


def test_cors_preflight_is_still_answered_by_cors(bare: TestClient) -> None:
    reply = bare.options("/api/chat", headers={"Origin": "http://localhost:3000",
                                               "Access-Control-Request-Method": "POST"})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_405_lists_every_method_of_the_path(bare: TestClient) -> None:
    reply = bare.put("/api/keys")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert reply.json() == {"error": "method PUT not allowed on /api/keys"}


def test_head_runs_the_get_without_a_body(bare: TestClient) -> None:
    get = bare.get("/openapi.json")
    head = bare.head("/openapi.json")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert bare.head("/api/no-such-route").status_code == 404
