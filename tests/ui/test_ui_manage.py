"""Models, jobs, history, metrics and keys pages in a real browser against a `deskml serve`
subprocess: a pull from the fake hub runs its progress bar to 100 %, a Modelfile creates a model, a
training job's bar follows its server-sent events to SUCCESS, the history opens one request with
its input and output, metrics chart live traffic, and a new API key is shown exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.jobs.jobdata import intents_csv
from tests.ui.conftest import shot, wait_js

pytestmark = pytest.mark.e2e

# Every value the pull's progress bar showed, as the page set it.
WATCH_BAR = """() => {
  window.__bar = [];
  const bar = document.querySelector('[role=progressbar][aria-label="Pull progress"]');
  new MutationObserver(() => window.__bar.push(Number(bar.getAttribute('aria-valuenow'))))
    .observe(bar, {attributes: true, attributeFilter: ['aria-valuenow']});
}"""


def test_models_pull_progress_reaches_100_then_create_and_delete(ui_server: ServerProcess, new_page: Any) -> None:
    page, errors = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(ui_server.url + "/ui/#/models")
    page.locator("tr[data-model='smollm2:135m']").wait_for()
    page.evaluate(WATCH_BAR)
    page.get_by_label("Model to pull").fill("tiny-chat")
    page.get_by_role("button", name="Pull", exact=True).click()
    page.locator(".pull-status .badge.ok").wait_for(timeout=120_000)
    bar = page.get_by_role("progressbar", name="Pull progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    seen = page.evaluate("window.__bar")
    assert seen and seen[-1] == 100 and seen == sorted(seen), seen
    assert "100%" in page.locator(".progress-row .progress-label").first.inner_text()
    page.locator("tr[data-model='tiny-chat:latest']").wait_for()
    assert "tiny-chat:latest" in {m["name"] for m in httpx.get(ui_server.url + "/api/tags").json()["models"]}

    # an unknown name: the hub's answer, in the page
    page.get_by_label("Model to pull").fill("tiny-chta")
    page.get_by_role("button", name="Pull", exact=True).click()
    error = page.locator(".pull-status .error-box")
    error.wait_for()
    assert "HTTP 404" in error.inner_text() and "did you mean tiny-chat:latest" in error.inner_text()

    page.get_by_label("Name", exact=True).fill("ui-assistant")
    page.get_by_role("button", name="Create", exact=True).click()
    page.locator(".badge.ok", has_text="created").wait_for(timeout=60_000)
    page.locator("tr[data-model='ui-assistant:latest']").wait_for()
    shown = httpx.post(ui_server.url + "/api/show", json={"model": "ui-assistant"}).json()
    assert "concise assistant" in shown["system"]

    # loaded models show with their expiry; unload frees one
    httpx.post(ui_server.url + "/api/generate", json={"model": "tiny-chat", "keep_alive": "10m"}, timeout=120)
    page.get_by_role("button", name="Refresh").click()
    loaded = page.locator("#m-loaded + .table-wrap tr[data-model='tiny-chat:latest']")
    loaded.wait_for(timeout=10_000)
    assert "in 10 min" in loaded.inner_text() or "in 9 min" in loaded.inner_text()
    shot(page, "models", full_page=True)
    loaded.get_by_role("button", name="Unload tiny-chat:latest").click()
    loaded.wait_for(state="detached", timeout=10_000)

    page.get_by_role("button", name="Delete tiny-chat:latest").click()
    page.locator("tr[data-model='tiny-chat:latest']").wait_for(state="detached")
    names = {m["name"] for m in httpx.get(ui_server.url + "/api/tags").json()["models"]}
    assert "tiny-chat:latest" not in names and "ui-assistant:latest" in names
    assert errors.unexpected("Failed to load resource") == []


def test_training_job_progress_follows_its_events_to_success(ui_server: ServerProcess, new_page: Any,
                                                             tmp_path: Path) -> None:
    dataset = tmp_path / "intents.csv"
    dataset.write_bytes(intents_csv(per_class=30))
    page, errors = new_page()
    page.goto(ui_server.url + "/ui/#/jobs")
    page.get_by_label("Dataset").set_input_files(str(dataset))
    page.get_by_label("Model name").fill("ui-intents")
    page.get_by_role("button", name="Upload and train").click()
    job = page.locator("article.job").first
    job.wait_for(timeout=60_000)
    # the page follows the job's server-sent events: the bar reaches 100 % and the state SUCCESS
    # without a reload (list refreshes are held back while a job is being watched)
    job.locator(".badge", has_text="SUCCESS").wait_for(timeout=300_000)
    assert job.get_by_role("progressbar").get_attribute("aria-valuenow") == "100"
    job.get_by_role("button", name="Details").click()
    assert "accuracy" in job.locator(".job-details").inner_text()
    job.get_by_label("Try ui-intents").fill("will it rain in Paris tomorrow")
    job.get_by_role("button", name="Classify").click()
    job.locator(".try li").first.wait_for()
    assert job.locator(".try li").first.inner_text().startswith("weather")
    shot(page, "jobs", full_page=True)
    assert errors.unexpected() == []


def wait_for_history_row(url: str, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = httpx.get(url + "/api/history", params={"path": path, "limit": 1}, timeout=10).json()
        if rows["items"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {path} row in the history within {timeout:.0f} s")


def chat(url: str, content: str, num_predict: int) -> int:
    return httpx.post(url + "/api/chat", timeout=120, json={
        "model": "smollm2:135m", "stream": False, "options": {"num_predict": num_predict},
        "messages": [{"role": "user", "content": content}]}).status_code


def test_history_metrics_and_keys_pages(ui_server: ServerProcess, new_page: Any) -> None:
    assert chat(ui_server.url, "История: скажи привет", 8) == 200
    # The history writer batches its rows, and the UI's own polling (/api/ps, /api/tags) from the
    # module's earlier tests can fill the first page: wait for the row itself, then filter to it.
    wait_for_history_row(ui_server.url, "/api/chat", timeout=120)
    page, errors = new_page()
    page.goto(ui_server.url + "/ui/#/history")
    page.locator(".history-table tbody tr").first.wait_for()
    page.get_by_label("Model", exact=True).fill("smollm2:135m")
    page.get_by_role("button", name="Filter").click()
    row = page.locator(".history-table tbody tr", has_text="/api/chat").first
    row.wait_for()
    row.click()
    detail = page.locator(".history-detail")
    detail.get_by_text("История: скажи привет").first.wait_for()
    assert "Generation" in detail.inner_text() and "tok/s" in detail.inner_text()
    shot(page, "history")

    page.goto(ui_server.url + "/ui/#/metrics")
    # Traffic while the page watches, at least three chats and on until its tokens/s chart shows some:
    # a rate between two scrapes is non-zero for one 2 s interval only, which three chats sent before
    # the wait could leave behind it on a loaded machine.
    statuses: list[int] = []
    charted = threading.Event()

    def traffic() -> None:
        while len(statuses) < 3 or not charted.is_set():
            statuses.append(chat(ui_server.url, "Count to five.", 16))

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        wait_js(page, "[...document.querySelectorAll('.chart-latest')][0]?.textContent.match(/[1-9]/)", timeout=120)
    finally:
        charted.set()
        sender.join(150)
    assert len(statuses) >= 3 and set(statuses) == {200}, statuses
    tiles = page.locator(".tiles").inner_text()
    assert "requests served" in tiles and "tokens generated" in tiles
    served = int(page.locator(".tile", has_text="requests served").locator(".tile-value").inner_text().replace(",", ""))
    assert served >= 4
    shot(page, "metrics")

    page.goto(ui_server.url + "/ui/#/keys")
    page.get_by_label("Name", exact=True).fill("ui-phone")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Key “ui-phone”")
    secret.wait_for()
    key = secret.input_value()
    assert key.startswith("dk_")
    assert httpx.get(ui_server.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    page.locator("tr[data-key]", has_text="ui-phone").wait_for()
    # pairing: a QR code for the phone app
    page.get_by_label("Device name").fill("pixel-8")
    page.get_by_role("button", name="Show pairing QR code").click()
    page.get_by_alt_text("Pairing QR code").wait_for()
    assert wait_js(page, "document.querySelector('.qr img').naturalWidth") > 50
    shot(page, "keys", full_page=True)
    page.locator(".secret-box", has_text="Key “ui-phone”").get_by_role("button", name="Done").click()
    assert page.get_by_label("Key “ui-phone”").count() == 0  # shown once: gone once dismissed
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke key ui-phone").click()
    page.get_by_role("button", name="Revoke key ui-phone").wait_for(state="detached")
    assert httpx.get(ui_server.url + "/api/tags", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert page.evaluate("Object.keys(localStorage).filter(k => k !== 'deskml.theme')") == []
    assert errors.unexpected() == []


def test_dark_theme_and_keyboard_navigation(ui_server: ServerProcess, new_page: Any) -> None:
    page, errors = new_page(color_scheme="dark")
    page.goto(ui_server.url + "/ui/#/chat")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 17, 21)"  # the dark palette follows the system preference
    page.get_by_role("button", name="Switch theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
    page.get_by_role("button", name="Switch theme").click()
    # keyboard only, from the top of the page (the chat page focuses its message box): the skip link,
    # then the page links
    page.evaluate("document.body.tabIndex = -1; document.body.focus(); document.body.removeAttribute('tabindex')")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")  # the brand
    page.keyboard.press("Tab")
    assert page.evaluate("[document.activeElement.textContent, document.activeElement.getAttribute('aria-current')]") \
        == ["Chat", "page"]
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Vision"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Vision").wait_for()
    assert page.evaluate("location.hash") == "#/vision"
    page.goto(ui_server.url + "/ui/#/chat")
    page.locator(".model-select").wait_for()
    shot(page, "chat-dark")
    assert errors.unexpected() == []
