"""The contract between the runtime and the text engines: core request in, core events out.

Every text engine streams `Event`s (`TextDelta`, `ThinkingDelta`, `ToolCallDelta`, and one `Done`
last, carrying the finish reason, the tool calls and the timings it measured) and raises a
`DeskmlError` when it fails. Which core request it takes depends on where the model runs:

- a `LocalEngine` (llama.cpp, or a fake in tests) runs a model this process loaded, and takes an
  `EngineRequest` the runtime prepared (Modelfile applied, tools planned, sampling resolved);
- an upstream (`engines.remote.RemoteEngine`) forwards the client's `ChatRequest` or `GenerateRequest`,
  which the server at the other end prepares for its own model.

`ModelManager` creates local engines through an `EngineLoader`, so tests can hand it one that needs
no model file.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from deskml.core.types import EngineRequest, Event
from deskml.engines.devices import CPU_PLAN, GpuPlan

RequestT_contra = TypeVar("RequestT_contra", contravariant=True)


class TextEngine(Protocol[RequestT_contra]):
    def stream(self, request: RequestT_contra) -> AsyncGenerator[Event, None]:
        """The reply as events, `Done` last. Closing the generator early (`aclose`) cancels the generation."""
        ...


@dataclass
class LoadConfig:
    """How to load one GGUF model: the runtime decides these, the engine applies them."""

    path: Path
    num_ctx: int  # context per request (slot)
    num_parallel: int
    threads: int = 0
    embedding: bool = False
    chat_template: str | None = None  # a Jinja template overriding the GGUF's own
    engine_log: bool = False
    batch: int = 512
    kv_cache_type: str = "q8_0"
    flash_attention: bool = True
    gpu: GpuPlan = CPU_PLAN  # layers offloaded and where; CPU_PLAN keeps everything on the CPU
    # Speculative decoding, resolved by the runtime: "off", an n-gram mode, or "draft" with `draft_path`
    # (a GGUF with the same vocabulary). llama.cpp fixes it for the life of the context.
    speculative: str = "off"
    draft_path: Path | None = None
    draft_max: int = 8  # most tokens one speculative step proposes


class LocalEngine(TextEngine[EngineRequest], Protocol):
    """A loaded model: generation, embeddings (for models loaded with `embedding`), and its release."""

    @property
    def gpu(self) -> GpuPlan:
        """Where the load really put the model (after any fallback to fewer GPU layers)."""
        ...

    async def embed(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        """One vector per input, in order, and the prompt tokens they took."""
        ...

    def close(self) -> None:
        """Blocking: free the model (called in a worker thread once no request is in flight)."""
        ...


class EngineLoader(Protocol):
    async def __call__(self, config: LoadConfig) -> LocalEngine:
        """Load a model as `config` says; a failure is a `ModelLoadError`."""
        ...
