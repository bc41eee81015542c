"""Errors and limits shared by every stage of the template package."""

from __future__ import annotations

import importlib

# The package itself, named without importing it here (it imports this module).
_PACKAGE = __name__.rpartition(".")[0]


class TemplateError(ValueError):
    """A template that cannot be parsed or executed."""


class Fail(Exception):
    """An execution error not yet tagged with the template line it happened on."""


def limit(name: str) -> int:
    """One of the package's caps (MAX_OUTPUT_BYTES, MAX_STEPS, MAX_NESTING), read when a run starts.

    The caps are public attributes of the package, so they are looked up there rather than copied
    into each stage at import: a value set on `gotemplate` then holds for parsing, rendering and
    render_prompt alike (the tests lower MAX_STEPS that way).
    """
    return int(getattr(importlib.import_module(_PACKAGE), name))
