"""The subset of Go's text/template that Ollama Modelfile TEMPLATEs use, and Ollama's prompt data.

A template can only look up data and call a fixed table of pure functions, so rendering never
runs Python code; output size, work and nesting are capped so a hostile template stays cheap.

Stages: lexer (text and action tokens) -> parser (node tree, parse-time checks) -> execute (with
funcs, the callable builtins, and values, Go's value printing); ollama lays out the data Ollama
gives a model's TEMPLATE and drives the per-turn rendering of legacy templates.
"""

from __future__ import annotations

import re
from typing import Any

from .common import TemplateError
from .execute import execute
from .ollama import render_prompt
from .parser import parse

__all__ = ["MAX_NESTING", "MAX_OUTPUT_BYTES", "MAX_STEPS", "TemplateError", "is_go_template", "render",
           "render_prompt"]

# The caps live here, on the package, and each stage reads them when a run starts (common.limit),
# so setting one here changes it everywhere.
MAX_OUTPUT_BYTES = 10 * 1024 * 1024
MAX_STEPS = 2_000_000
# Blocks and parentheses recurse in Python; capping their depth stays far below its recursion limit.
MAX_NESTING = 64


def is_go_template(text: str) -> bool:
    """True for Go-template text: has a {{ }} action and no Jinja {% %} block."""
    return bool(re.search(r"\{\{.*?\}\}", text, re.S)) and not re.search(r"\{%.*?%\}", text, re.S)


def render(template: str, data: dict[str, Any]) -> str:
    """Render against plain data: dict keys are Go map keys, so `.System` reads data["System"]."""
    return execute(parse(template), data)
