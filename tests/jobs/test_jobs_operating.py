"""Operating jobs: the worker's name carries the real host, and a training job says it is loading its
model while the first chunk loads it (not "reading the dataset" for those seconds)."""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from deskml.cli.jobs import worker_name
from deskml.runtime.jobs.tasks.text import train_text_classifier


def test_worker_name_has_the_host_filled_in() -> None:
    name = worker_name()
    assert "%h" not in name and name.endswith("@" + socket.gethostname()) and name.startswith("deskml-")


class _Stop(Exception):
    pass


def test_text_training_says_it_loads_the_embedding_model_while_it_does() -> None:
    said: list[str] = []
    seen_at_first_embed: list[str] = []
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(8)]

    async def progress(done: int, total: int, message: str, force: bool = False) -> None:
        said.append(message)

    async def embed(request: Any) -> Any:
        seen_at_first_embed.append(said[-1])  # what the job's status says while the model loads
        raise _Stop()

    ctx = SimpleNamespace(
        job=SimpleNamespace(params={"dataset": "d1", "name": "m", "embedding": "all-minilm"}),
        store=SimpleNamespace(read_file=lambda _: "\n".join(json.dumps(r) for r in rows).encode()),
        runtime=SimpleNamespace(service_tasks=SimpleNamespace(embed=embed)),
        progress=progress,
    )
    with pytest.raises(_Stop):
        asyncio.run(train_text_classifier(ctx))  # type: ignore[arg-type]
    assert said[0] == "reading the dataset"
    assert seen_at_first_embed == ["loading the embedding model all-minilm"]
