"""A router node in front of two real deskml nodes, as docs/scale.md sets it up: apps send the name the
README tells them ("smollm2"), which the nodes list as smollm2:135m; the load is still split across
the nodes (and the router's own copy, unless it only forwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.routing.nodes import answered, run_load, start_node, start_router

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    root = tmp_path_factory.mktemp("nodes")
    started: dict[str, ServerProcess] = {}
    try:
        for name in ("a", "b"):
            started[name] = start_node(root / name, name=name)
        yield started
    finally:
        for proc in started.values():
            proc.stop()


@pytest.mark.parametrize("forward_only", [False, True], ids=["with-local", "forward-only"])
def test_forty_smollm2_chats_are_split_across_the_nodes(
    tmp_path: Path, nodes: dict[str, ServerProcess], forward_only: bool
) -> None:
    router = start_router(tmp_path / "router", nodes, forward_only=forward_only)
    try:
        load = run_load(router.url, "smollm2", stream=False, clients=8, each=5)
        split = answered(router)
        print(f"\n40 'smollm2' chats ({'forward only' if forward_only else 'router serves too'}): {split}")
        assert load.failures == [], load.failures
        assert load.sent == 40 and sum(split.values()) == 40
        assert split.get("a", 0) >= 5 and split.get("b", 0) >= 5, split  # before: 0 and 0, all local
        if forward_only:
            assert "local" not in split
        else:
            assert split.get("local", 0) >= 5, split
    finally:
        router.stop()
