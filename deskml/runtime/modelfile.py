"""Ollama's Modelfile: parse it, check parameters, and render one back for `/api/show`."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from deskml.core.errors import BadRequest
from deskml.core.options import PARAMETER_TYPES
from deskml.core.speculation import speculative_mode


class Modelfile(BaseModel):
    from_: str | None = None
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, str]] = Field(default_factory=list)
    license: list[str] = Field(default_factory=list)
    adapters: list[str] = Field(default_factory=list)
    # DRAFT <model> (a deskml extension): the small model that drafts tokens for speculative decoding.
    # "none" removes a draft the FROM model has.
    draft: str | None = None


def coerce_parameter(name: str, value: Any) -> Any:
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise BadRequest(f"unknown parameter '{name}'")
    if name == "speculative":  # deskml's one PARAMETER with a set of names for values
        return speculative_mode(value, f"PARAMETER {name}")
    try:
        if kind is list:
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in {"true", "false", "1", "0"}:
                    raise ValueError(value)
                return value.lower() in {"true", "1"}
            return bool(value)
        if kind is int:
            return int(float(value)) if isinstance(value, str) and "." in value else int(value)
        return float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"invalid value {value!r} for parameter '{name}'") from None


def merge_parameters(target: dict[str, Any], name: str, value: Any) -> None:
    value = coerce_parameter(name, value)
    if name == "stop":
        target.setdefault("stop", [])
        target["stop"].extend(v for v in value if v not in target["stop"])
    else:
        target[name] = value


_WORD = re.compile(r"[ \t]*(\S+)")
_SKIP = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*")


def _read_value(text: str, pos: int) -> tuple[str, int]:
    """Read an argument at `pos`: a triple-quoted block, a quoted string, or the rest of the line.
    Returns the value and the position just past it."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    if text.startswith('"""', pos):
        end = text.find('"""', pos + 3)
        if end < 0:
            raise BadRequest('unterminated """ in Modelfile')
        return text[pos + 3 : end], end + 3
    line_end = text.find("\n", pos)
    line_end = len(text) if line_end < 0 else line_end
    line = text[pos:line_end].strip()
    if len(line) >= 2 and line[0] == line[-1] == '"':
        try:
            line = json.loads(line)
        except ValueError:
            line = line[1:-1]
    return line, line_end


def parse(text: str) -> Modelfile:
    result = Modelfile()
    pos = 0
    while True:
        skip = _SKIP.match(text, pos)
        assert skip is not None  # _SKIP matches the empty string too
        pos = skip.end()
        if pos >= len(text):
            break
        word = _WORD.match(text, pos)
        assert word is not None  # _SKIP stopped on a non-space character
        command, pos = word.group(1).upper(), word.end()
        if command in {"PARAMETER", "MESSAGE"}:
            key = _WORD.match(text, pos)
            if key is None or "\n" in text[pos : key.start(1)]:
                raise BadRequest(f"{command} needs a name and a value")
            value, pos = _read_value(text, key.end())
            if command == "PARAMETER":
                merge_parameters(result.parameters, key.group(1).lower(), value)
            else:
                role = key.group(1).lower()
                if role not in {"system", "user", "assistant"}:
                    raise BadRequest(f"MESSAGE role must be system, user or assistant, not {role!r}")
                result.messages.append({"role": role, "content": value})
        elif command in {"FROM", "SYSTEM", "TEMPLATE", "LICENSE", "ADAPTER", "REQUIRES", "DRAFT"}:
            value, pos = _read_value(text, pos)
            if command == "FROM":
                result.from_ = value
            elif command == "SYSTEM":
                result.system = value
            elif command == "TEMPLATE":
                result.template = value
            elif command == "LICENSE":
                result.license.append(value)
            elif command == "ADAPTER":
                result.adapters.append(value)
            elif command == "DRAFT":
                if not value:
                    raise BadRequest("DRAFT needs a model name (or none)")
                result.draft = value
        else:
            raise BadRequest(f"unknown Modelfile instruction {command!r}")
        line_end = text.find("\n", pos)
        pos = len(text) if line_end < 0 else line_end + 1
    if not result.from_:
        raise BadRequest("Modelfile has no FROM line")
    return result


def _quote(value: str) -> str:
    return f'"""{value}"""' if "\n" in value or '"' in value else f'"{value}"' if " " in value else value


def render(from_: str, system: str | None, template: str | None, parameters: dict[str, Any],
           messages: list[dict[str, Any]], licenses: list[str], name: str | None = None,
           draft: str | None = None) -> str:
    """A Modelfile for a model; `name` (the model's own) is what a Modelfile built on it says in FROM;
    `draft` the model that drafts for it (speculative decoding)."""
    lines = ["# Modelfile generated by deskml"]
    if name and name != from_:
        lines += ["# To build a new Modelfile based on this one, replace the FROM line with:", f"# FROM {name}", ""]
    lines.append(f"FROM {from_}")
    if draft:
        lines.append(f"DRAFT {draft}")
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    if system:
        lines.append(f'SYSTEM """{system}"""')
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                rendered = json.dumps(item, ensure_ascii=False)
            else:
                rendered = str(item).lower() if isinstance(item, bool) else str(item)
            lines.append(f"PARAMETER {name} {rendered}")
    for message in messages:
        lines.append(f"MESSAGE {message.get('role')} {_quote(str(message.get('content', '')))}")
    for text in licenses:
        lines.append(f'LICENSE """{text}"""')
    return "\n".join(lines) + "\n"
