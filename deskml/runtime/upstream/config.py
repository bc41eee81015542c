"""The routing configuration file (DESKML_UPSTREAMS_FILE, TOML or YAML): upstream backends, routing
rules, fallbacks and the circuit breaker's settings. See docs/routing.md for the format."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deskml.core.errors import BadRequest
from deskml.runtime import names

Task = Literal["chat", "generate", "embed", "tools", "vision", "json"]


class UpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name: shows in metrics, history ('upstream:NAME') and doctor.")
    kind: Literal["openai", "ollama", "deskml"] = Field(
        description="openai: any OpenAI-compatible server (vLLM, cloud APIs); ollama: an Ollama server; "
        "deskml: another deskml node (loop-protected)."
    )
    url: str = Field(description="Base URL, e.g. http://10.0.0.5:11434 or https://api.openai.com/v1.")
    api_key_env: str | None = Field(None, description="Environment variable holding the key sent as a Bearer token.")
    prefix: str = Field("", description="Prepended to the upstream's model names, e.g. 'cloud/'.")
    models: list[str] = Field(
        default_factory=list, description="Models to offer; empty = whatever the upstream lists."
    )
    timeout: float = Field(120.0, gt=0, description="Seconds to wait for the next bytes of a reply.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")
    verify_tls: bool | str = Field(True, description="Check the upstream's certificate: true, false or a CA file.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or value == "local" or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("an upstream name is letters, digits, '-', '_' or '.', and not 'local'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {value!r}")
        return value

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def missing_key(self) -> bool:
        return bool(self.api_key_env) and not os.environ.get(self.api_key_env or "")


class Rule(BaseModel):
    """Send matching requests to `to` (model names, tried in order) instead of the requested model."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    model: str = Field("*", description="Glob on the requested model name.")
    task: list[Task] = Field(default_factory=list, description="Any of these task types (empty = any).")
    min_prompt_chars: int | None = Field(None, ge=0)
    max_prompt_chars: int | None = Field(None, ge=0)
    to: list[str] = Field(min_length=1)

    @field_validator("task", "to", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def matches(self, model: str, tasks: set[str], prompt_chars: int) -> bool:
        if not fnmatch.fnmatchcase(model_key(model), model_key_glob(self.model)):
            return False
        if self.task and not tasks.intersection(self.task):
            return False
        if self.min_prompt_chars is not None and prompt_chars < self.min_prompt_chars:
            return False
        return self.max_prompt_chars is None or prompt_chars <= self.max_prompt_chars


class RouterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["least_outstanding", "local_first"] = Field(
        "least_outstanding",
        description="Among backends serving the same model: fewest requests in flight, or local first and "
        "upstreams in file order.",
    )
    health_interval: float = Field(10.0, gt=0, description="Seconds between health checks of each upstream.")
    failure_threshold: int = Field(3, ge=1, description="Consecutive failures that open an upstream's circuit.")
    open_seconds: float = Field(30.0, gt=0, description="Seconds an open circuit waits before a half-open probe.")
    max_hops: int = Field(4, ge=1, description="Deskml nodes a request may pass through.")


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router: RouterSettings = Field(default_factory=RouterSettings)
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    fallback: dict[str, list[str]] = Field(
        default_factory=dict, description="Model (or glob) -> models to try when none of its backends answers."
    )

    @field_validator("fallback", mode="before")
    @classmethod
    def _fallback_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _unique(self) -> RoutingConfig:
        seen = [u.name for u in self.upstreams]
        dupes = sorted({n for n in seen if seen.count(n) > 1})
        if dupes:
            raise ValueError(f"upstream names must be unique: {', '.join(dupes)}")
        return self

    def fallbacks_for(self, model: str) -> list[str]:
        key = model_key(model)
        for pattern, targets in self.fallback.items():
            if fnmatch.fnmatchcase(key, model_key_glob(pattern)):
                return targets
        return []


def model_key(name: str) -> str:
    """The form names are compared in: Ollama's canonical `path:tag` when the name is one, else lower case."""
    try:
        return names.normalize(name)
    except BadRequest:
        return name.strip().lower()


def model_key_glob(pattern: str) -> str:
    return pattern.strip().lower() if any(c in pattern for c in "*?[") else model_key(pattern)


def load_config(path: Path) -> RoutingConfig:
    """Read and validate the file; raises BadRequest with the file name and the exact problem."""
    path = path.expanduser()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot read the upstreams file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError or yaml.YAMLError: both name the line
        raise BadRequest(f"{path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: {exc}") from None
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"{path}: {problems}") from None
