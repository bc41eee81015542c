"""Server settings: one field per option, read from `DESKML_*` env vars and a `.env` file.

Settings are read when an app is built (`Settings()` in the CLI or a test), never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deskml.core.durations import parse_keep_alive


def _default_parallel() -> int:
    # Two slots per core keeps the batch busy while one stream samples; at least 2 so a second
    # client never waits for the first reply to finish, at most 8 so KV memory stays small.
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DESKML_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = Field("127.0.0.1", description="Address to bind. Loopback by default.")
    port: int = Field(11434, description="Port to listen on (Ollama's default, so Ollama apps work unchanged).")
    data_dir: Path = Field(
        Path("~/.deskml"), description="Where models, the registry and databases live."
    )
    default_model: str = Field("smollm2:135m", description="Model loaded by --preload and used by the seed API.")
    preload: bool = Field(False, description="Load the default model at start-up instead of on first use.")
    keep_alive: float = Field(
        300.0,
        description="Seconds an idle model stays loaded (duration strings like '5m' accepted; "
        "0 = unload at once; negative = forever).",
    )
    num_parallel: int = Field(
        default_factory=_default_parallel,
        description="Parallel decoding slots per loaded LLM (continuous batching). "
        "Default: 2 per CPU core, between 2 and 8.",
    )
    max_queue: int = Field(64, description="Requests that may wait for a slot per model before 503 'server busy'.")
    max_loaded_models: int = Field(
        3, description="Loaded models kept at once; the least recently used idle one goes first."
    )
    memory_budget_mb: int = Field(
        0, description="Memory (MB) loaded models may use together; 0 = 75% of physical RAM."
    )
    num_ctx: int = Field(4096, description="Default context length per request (Ollama's num_ctx).")
    num_threads: int = Field(0, description="CPU threads for inference; 0 = all physical cores.")
    ollama_stream_default: bool = Field(
        True,
        description="What Ollama endpoints do when a request omits 'stream'. Ollama streams (true). "
        "Set false for clients that omit it yet expect one JSON object.",
    )
    origins: list[str] = Field(
        default_factory=list, description="Extra CORS origins allowed besides localhost and app schemes."
    )
    max_upload_mb: float = Field(
        100, description="Largest request body (uploads included) in MB; larger ones get 413 before being read."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    engine_log: bool = Field(False, description="Pass llama.cpp's own log lines through to stderr.")

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, value: object) -> float:
        return parse_keep_alive(value)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
