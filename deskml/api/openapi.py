"""The OpenAPI document, made to say what the server really answers.

FastAPI lists only the success status and a 422 that deskml never sends (validation errors are 400,
see `errors.install_handlers`). Client generators (Flutter/Dart, openapi-generator) build their error
handling from this document, so each operation gets the error statuses it can really give, in the body
shape of its dialect. What every route shares (the Host/Origin guard, auth, rate limits, the body limit,
shutdown) is decided here from the same rules the middleware uses; what a handler itself can answer is in
`HANDLER_ERRORS`, one line per operation.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from deskml.api.errors import dialect_for_path
from deskml.api.middleware.auth import required_scope
from deskml.api.middleware.ratelimit import EXEMPT_PATHS, EXEMPT_PREFIXES


class OllamaError(BaseModel):
    """Ollama's error body, used by `/api/*` and the other deskml routes."""

    error: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, rate_limit_error, "
                                  "not_implemented_error or server_error")
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error object, used by `/v1/*`."""

    error: OpenAIErrorDetail


class BackendError(BaseModel):
    """The seed ML-backend's error body (`/health`, `/api/llm/*`, `/api/vision/*`, `/api/audio/*`, ...)."""

    success: Literal[False]
    error: str


_ERROR_MODELS: dict[str, type[BaseModel]] = {"ollama": OllamaError, "openai": OpenAIError, "backend": BackendError}

DESCRIPTIONS = {
    400: "Bad request: invalid JSON, a missing or invalid field or parameter",
    401: "Missing or invalid credentials (when DESKML_AUTH is on)",
    403: "Refused: the Host or Origin is not allowed, or the credentials lack the scope this route needs",
    404: "Not found: the model, file, job or other item named in the request does not exist",
    409: "Conflict with an existing item",
    413: "Request body over the size limit (DESKML_MAX_UPLOAD_MB)",
    429: "Rate limit or token budget exceeded; see Retry-After",
    501: "Not available: an optional extra is not installed, or the model cannot do this",
    502: "An upstream server (model hub or routed deskml node) failed",
    503: "Busy (queue full) or shutting down; retry after Retry-After seconds",
    507: "Not enough free disk space",
    508: "Routing loop between deskml nodes",
}

# Statuses a handler (and what it calls) can answer on its own, beyond the shared rules in
# `error_statuses`. Keys are "METHOD /path" as the document lists them.
_RUN = frozenset({404, 501, 502, 508})  # runs a model: unknown model, one that cannot do it, routed upstreams
_SERVICE = frozenset({404, 501})  # service models (vision, audio, images, rerank): unknown model or missing extra
HANDLER_ERRORS: dict[str, frozenset[int]] = {
    "POST /api/chat": _RUN, "POST /api/generate": _RUN, "POST /api/embed": _RUN, "POST /api/embeddings": _RUN,
    "POST /api/show": frozenset({404}), "POST /api/copy": frozenset({404, 409, 507}),
    "DELETE /api/delete": frozenset({404}), "POST /api/create": frozenset({404, 409, 501, 502, 507}),
    "HEAD /api/blobs/{digest}": frozenset({404}), "POST /api/blobs/{digest}": frozenset({507}),
    "POST /api/pull": frozenset({404, 502, 507}), "POST /api/push": frozenset({501}),
    "POST /v1/chat/completions": _RUN, "POST /v1/completions": _RUN, "POST /v1/embeddings": _RUN,
    "GET /v1/models/{model_id}": frozenset({404}),
    "POST /api/rerank": _SERVICE, "POST /v1/rerank": _SERVICE,
    "POST /api/llm/generate": _RUN,
    "POST /api/vision/classify": _SERVICE, "POST /api/vision/ocr": _SERVICE, "POST /api/vision/detect": _SERVICE,
    "POST /v1/audio/transcriptions": _SERVICE, "POST /v1/audio/translations": _SERVICE,
    "POST /v1/audio/speech": _SERVICE, "POST /v1/images/generations": _SERVICE,
    "POST /api/audio/transcribe": _SERVICE, "POST /api/audio/speak": _SERVICE, "GET /api/audio/voices": frozenset(),
    "POST /api/images/generate": _SERVICE, "POST /api/images/stylize": _SERVICE,
    "POST /api/train": frozenset({404, 409, 501}), "GET /api/task/{task_id}/status": frozenset({404}),
    "POST /api/files": frozenset({507}),
    "GET /api/jobs/{job_id}": frozenset({404}), "DELETE /api/jobs/{job_id}": frozenset({404}),
    "GET /api/jobs/{job_id}/events": frozenset({404}), "POST /api/classify": frozenset({404, 501}),
    "POST /v1/files": frozenset({507}), "GET /v1/files/{file_id}": frozenset({404}),
    "DELETE /v1/files/{file_id}": frozenset({404}), "GET /v1/files/{file_id}/content": frozenset({404}),
    "POST /v1/batches": frozenset({404}), "GET /v1/batches/{batch_id}": frozenset({404}),
    "POST /v1/batches/{batch_id}/cancel": frozenset({404}),
    "POST /login": frozenset({401, 501}), "POST /login/refresh": frozenset({401, 501}),
    "POST /api/keys": frozenset({409}), "DELETE /api/keys/{id_or_name}": frozenset({404}),
    "POST /api/users": frozenset({409}), "DELETE /api/users/{username}": frozenset({404}),
    "GET /api/conversations/{conversation_id}": frozenset({404}),
    "PATCH /api/conversations/{conversation_id}": frozenset({404}),
    "DELETE /api/conversations/{conversation_id}": frozenset({404}),
    "POST /api/admin/pair": frozenset({409}), "GET /api/admin/upstreams": frozenset(),
}

# Success bodies that are not (only) the JSON FastAPI infers: streams, audio, files, text formats.
_NDJSON = {"application/x-ndjson": {"schema": {"type": "string"}}}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
_ANY_JSON: dict[str, Any] = {"application/json": {"schema": {}}}
_AUDIO = {"audio/wav": {"schema": {"type": "string", "format": "binary"}},
          "audio/mpeg": {"schema": {"type": "string", "format": "binary"}},
          "audio/ogg": {"schema": {"type": "string", "format": "binary"}},
          "audio/flac": {"schema": {"type": "string", "format": "binary"}},
          "audio/aac": {"schema": {"type": "string", "format": "binary"}},
          "audio/pcm": {"schema": {"type": "string", "format": "binary"}}}
EXTRA_SUCCESS_CONTENT: dict[str, dict[str, Any]] = {
    "POST /api/chat": _NDJSON, "POST /api/generate": _NDJSON, "POST /api/create": _NDJSON,
    "POST /api/pull": _NDJSON, "POST /v1/chat/completions": _SSE, "POST /v1/completions": _SSE,
    "POST /api/audio/speak": _AUDIO, "POST /v1/audio/speech": _AUDIO,
    "POST /v1/audio/transcriptions": {"text/plain": {"schema": {"type": "string"}}},
    "POST /v1/audio/translations": {"text/plain": {"schema": {"type": "string"}}},
    "GET /api/jobs/{job_id}/events": _SSE,
    "GET /v1/files/{file_id}/content": {"application/jsonl": {"schema": {"type": "string"}},
                                        "application/zip": {"schema": {"type": "string", "format": "binary"}}},
}
# Operations whose success answer has no body at all.
NO_BODY = frozenset({"HEAD /api/blobs/{digest}", "POST /api/blobs/{digest}", "POST /api/copy", "DELETE /api/delete"})
# ... and those whose body is only what EXTRA_SUCCESS_CONTENT says (no JSON at all).
ONLY_EXTRA = frozenset({"POST /v1/audio/speech", "GET /api/jobs/{job_id}/events",
                        "GET /v1/files/{file_id}/content"})


# Rules the handlers check that FastAPI cannot see in the wire models (a blank model name, an empty
# list, a value only some routes take). They are stated here, next to the rest of what the document
# must say, so the wire models (shared with other dialects and the tests) keep their own messages;
# `correct_requests` fails loudly when a name below no longer exists, so this table cannot go stale.
_NON_EMPTY = {"minLength": 1}
_SCOPES = ("admin", "inference", "models", "all")
REQUEST_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "ChatRequest": {"model": _NON_EMPTY}, "GenerateRequest": {"model": _NON_EMPTY},
    "EmbedRequest": {"model": _NON_EMPTY}, "EmbeddingsRequest": {"model": _NON_EMPTY},
    "CopyRequest": {"source": _NON_EMPTY, "destination": _NON_EMPTY},
    "ModelRequest": {"model": _NON_EMPTY, "name": _NON_EMPTY},
    "CreateRequest": {"model": _NON_EMPTY, "name": _NON_EMPTY},
    "RerankRequest": {"query": _NON_EMPTY, "documents": {"minItems": 1}},
    "TrainRequest": {"dataset": _NON_EMPTY},
    "PairRequest": {"name": _NON_EMPTY},
    "KeyCreate": {"scopes": {"minItems": 1, "items": {"type": "string", "enum": list(_SCOPES)}}},
    "UserCreate": {"scopes": {"minItems": 1, "items": {"type": "string", "enum": list(_SCOPES)}}},
    "ClassifyTextRequest": {"top_k": {"minimum": 1, "maximum": 1000}},
    "SpeechRequest": {"stream_format": {"enum": ["audio"]}},
    "CreateBatch": {"endpoint": {"enum": ["/v1/chat/completions", "/v1/embeddings"]}},
    "ChatCompletionRequest": {"messages": {"minItems": 1}},
}
# Ollama takes the model as `model` or, from older clients, `name`: one of them is needed.
ONE_OF_REQUIRED: dict[str, list[str]] = {"ModelRequest": ["model", "name"], "CreateRequest": ["model", "name"]}
# Multipart file fields are declared `UploadFile | None` so that a missing file gets the dialect's own
# message; on the wire a file part is there or not (never null), and only these may be left out.
OPTIONAL_FILES: dict[str, set[str]] = {"POST /api/images/stylize": {"style_image"}}
_WHEN = {"anyOf": [{"type": "string", "format": "date-time"},
                   {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,6})?$"},
                   {"type": "string", "pattern": r"^[0-9]{1,5}(\.[0-9]{1,3})?(ms|s|m|h|d)$"}],
         "description": "ISO time, Unix seconds, or a duration ago ('30m', '1h', '7d')."}
_DIGEST = {"type": "string", "pattern": "^sha256[:-][0-9a-f]{64}$"}
PARAM_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "GET /api/history": {"since": _WHEN, "until": _WHEN},
    "HEAD /api/blobs/{digest}": {"digest": _DIGEST}, "POST /api/blobs/{digest}": {"digest": _DIGEST},
}


def _constrain(prop: dict[str, Any], rule: dict[str, Any]) -> None:
    """Add `rule` to a property, or to each non-null branch of an optional one."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    for branch in branches:
        branch.update(rule)


def correct_requests(spec: dict[str, Any]) -> None:
    components = spec["components"]["schemas"]
    for name, fields in REQUEST_RULES.items():
        for field, rule in fields.items():
            _constrain(components[name]["properties"][field], rule)
    for name, either in ONE_OF_REQUIRED.items():
        components[name]["anyOf"] = [{"required": [field]} for field in either]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            key = f"{method.upper()} {path}"
            for param in operation.get("parameters", []):
                if param["name"] in PARAM_RULES.get(key, {}):
                    param["schema"] = PARAM_RULES[key][param["name"]]
            form = (operation.get("requestBody") or {}).get("content", {}).get("multipart/form-data")
            if form is None:
                continue
            schema = components[form["schema"]["$ref"].rsplit("/", 1)[-1]]
            for field, prop in schema["properties"].items():
                file_branch = next((b for b in prop.get("anyOf", [prop])
                                    if b.get("contentMediaType") == "application/octet-stream"), None)
                if file_branch is None:
                    continue
                schema["properties"][field] = {**file_branch, "format": "binary",
                                               **{k: v for k, v in prop.items() if k in {"title", "description"}}}
                if field not in OPTIONAL_FILES.get(key, set()):
                    schema.setdefault("required", [])
                    if field not in schema["required"]:
                        schema["required"].append(field)
    for path, rules in PARAM_RULES.items():
        method, _, route = path.partition(" ")
        names = {p["name"] for p in spec["paths"][route][method.lower()].get("parameters", [])}
        if not set(rules) <= names:
            raise KeyError(f"{path}: no parameter {set(rules) - names}")


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses one operation can answer."""
    statuses = {403, 503}  # Host/Origin guard (any route); shutting down (any route)
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.add(400)
    if operation.get("requestBody"):
        statuses.add(413)
    if required_scope(method, path) is not None:
        statuses.add(401)
    if path not in EXEMPT_PATHS and not path.startswith(EXEMPT_PREFIXES):
        statuses.add(429)
    statuses |= HANDLER_ERRORS.get(f"{method} {path}", frozenset())
    return statuses


def _error_response(status: int, dialect: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{_ERROR_MODELS[dialect].__name__}"}
    response: dict[str, Any] = {"description": DESCRIPTIONS[status],
                                "content": {"application/json": {"schema": schema}}}
    if status in {429, 503}:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying",
                                               "schema": {"type": "integer"}}}
    return response


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite FastAPI's generated document in place: real error statuses and bodies, no 422."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (OllamaError, OpenAIError, BackendError):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    for path, operations in spec.get("paths", {}).items():
        for method_lower, operation in operations.items():
            method = method_lower.upper()
            key = f"{method} {path}"
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            success = next((code for code in responses if code.startswith("2")), None)
            if success is not None:
                if key in NO_BODY:
                    responses[success].pop("content", None)
                elif key in EXTRA_SUCCESS_CONTENT:
                    content = {} if key in ONLY_EXTRA else dict(responses[success].get("content") or _ANY_JSON)
                    content.update(EXTRA_SUCCESS_CONTENT[key])
                    responses[success]["content"] = content
            dialect = dialect_for_path(path)
            for status in sorted(error_statuses(method, path, operation)):
                responses.setdefault(str(status), _error_response(status, dialect))
            if method == "HEAD":  # a HEAD answer never has a body, whatever its status
                for response in responses.values():
                    response.pop("content", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                               description=app.description, routes=app.routes)
            correct_requests(spec)
            app.openapi_schema = document_errors(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
