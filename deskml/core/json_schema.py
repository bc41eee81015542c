"""JSON Schema checks shared by every dialect: a schema that reaches llama.cpp's grammar compiler
must be valid JSON Schema, so a client mistake is a 400 naming the field, not an engine failure."""

from __future__ import annotations

from typing import Any

from deskml.core.errors import BadRequest


def check_json_schema(schema: Any, *, param: str = "format") -> None:
    """Raise BadRequest unless `schema` is a valid JSON Schema object (draft 2020-12 unless it says)."""
    if not isinstance(schema, dict):
        raise BadRequest(f"invalid JSON schema: expected an object, got {type(schema).__name__}", param=param)
    import jsonschema  # a server dependency; imported here so importing deskml.core stays cheap

    try:
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadRequest(f"invalid JSON schema: {exc.message}", param=param) from None
