"""The response-cache hook the inference service calls; the cache itself lives in services.

The runtime only knows this Protocol: it hands over what identifies the model, the whole request,
the effective sampling and a way to produce the reply afresh; the cache decides whether the request
is deterministic, answers from storage, or records the fresh stream as it passes through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from deskml.core.types import Event, SamplingOptions

CacheKind = Literal["chat", "generate"]


class ResponseCache(Protocol):
    def stream(
        self,
        kind: CacheKind,
        identity: dict[str, Any],
        request: BaseModel,
        sampling: SamplingOptions,
        produce: Callable[[], AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        """The reply's events: replayed from the cache, or `produce()`'s events (recorded on the way)."""
        ...


def is_deterministic(sampling: SamplingOptions) -> bool:
    """Greedy decoding, or sampling with a fixed seed (llama.cpp treats a negative seed as random)."""
    if sampling.temperature is not None and sampling.temperature <= 0:
        return True
    return sampling.seed is not None and sampling.seed >= 0
