"""How many async generators one streamed token passes through, from the engine to the HTTP response.

Wraps the llama.cpp engine's `stream` so that, each time the engine hands over a piece, it walks the
Python stack and counts the async-generator frames consuming it (each `async for` over another
generator is one more frame per token). Runs `/api/chat` and `/v1/chat/completions` streaming against
the bundled model in-process and prints the deepest chain seen, frame by frame.

    python scripts/measure_token_hops.py            # this tree
    PYTHONPATH=/path/to/other/tree python scripts/measure_token_hops.py
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.engines.llama_cpp import LlamaCppModel
from deskml.settings import Settings


def chain() -> list[str]:
    frames, frame = [], sys._getframe(2)  # skip chain() and the wrapper's own frame
    while frame is not None:
        if frame.f_code.co_flags & inspect.CO_ASYNC_GENERATOR:
            module = frame.f_globals.get("__name__", "?")
            frames.append(f"{module}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return frames


def main() -> None:
    deepest: dict[str, list[str]] = {}
    original = LlamaCppModel.stream
    current = {"route": ""}

    async def counted(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async for item in original(self, *args, **kwargs):
            seen = chain()
            if len(seen) > len(deepest.get(current["route"], [])):
                deepest[current["route"]] = seen
            yield item

    LlamaCppModel.stream = counted  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), allowed_hosts=["testserver"], mdns="off")
        with TestClient(create_app(settings)) as client:
            for route, body in (
                ("/api/chat", {"model": "smollm2", "stream": True, "options": {"num_predict": 8},
                               "messages": [{"role": "user", "content": "Say hi"}]}),
                ("/v1/chat/completions", {"model": "smollm2", "stream": True, "max_tokens": 8,
                                          "messages": [{"role": "user", "content": "Say hi"}]}),
            ):
                current["route"] = route
                with client.stream("POST", route, json=body) as reply:
                    assert reply.status_code == 200, reply.read()
                    for _ in reply.iter_lines():
                        pass
    for route, frames in deepest.items():
        deskml_frames = [f for f in frames if f.startswith("deskml.")]
        print(f"{route}: {len(frames)} async generators per token ({len(deskml_frames)} in deskml), engine first:")
        for f in frames:
            print(f"  {f}")


if __name__ == "__main__":
    main()
