"""Metrics and History pages in Chromium: the charts fill from the first scrapes (the second comes
right after the first, not one full interval later), the TTFT chart and tile show the average
whenever a p95 is known, and the History page hides the UI's own requests unless asked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.ui.conftest import start_server, wait_js, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("ui-startstop"), env={"DESKML_HISTORY_FLUSH_SECONDS": "0.1"})
    try:
        yield proc
    finally:
        proc.stop()


def _chat(url: str) -> None:
    reply = httpx.post(url + "/api/chat", timeout=120, json={
        "model": "smollm2:135m", "stream": False, "options": {"num_predict": 4},
        "messages": [{"role": "user", "content": "Say hi."}]})
    assert reply.status_code == 200, reply.text


def test_metrics_charts_fill_at_once_and_ttft_is_consistent(server: ServerProcess, new_page: Any) -> None:
    _chat(server.url)  # a TTFT to show; then no traffic while the page watches
    page, errors = new_page()
    # when each /metrics scrape was sent and when its reply had arrived
    sent: list[float] = []
    answered: list[float] = []
    page.on("request", lambda r: sent.append(time.monotonic()) if r.url.endswith("/metrics") else None)
    page.on("requestfinished", lambda r: answered.append(time.monotonic()) if r.url.endswith("/metrics") else None)
    page.goto(server.url + "/ui/#/metrics")
    labels = "[...document.querySelectorAll('.chart-latest')].map(e => e.textContent)"
    wait_js(page, f"{labels}.every(t => /[0-9]/.test(t))", timeout=60)
    # Playwright hands request events to this thread when it next talks to the browser: on a loaded
    # machine the charts can fill before the scrapes' events arrive, so wait for the events themselves.
    deadline = time.monotonic() + 60
    while not (len(sent) >= 2 and answered) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    # The second scrape follows the first one's reply at once (0.4 s), not the 2 s interval; counted
    # from that reply, since a loaded machine may take a second or more to answer the first.
    assert len(sent) >= 2 and answered and sent[1] - answered[0] < 1.5, (sent, answered)
    tokens, ttft, queue, requests = page.evaluate(labels)
    assert tokens.endswith("tok/s") and requests.endswith("req/s") and queue
    # no request since the page opened: the chart says the average since start, next to its p95
    assert ttft.endswith("ms since start"), ttft
    tile = page.locator(".tile", has_text="TTFT average / p95").locator(".tile-value").inner_text()
    average, p95 = (part.strip() for part in tile.split("/"))
    assert float(average) > 0 and p95.endswith("ms") and float(p95.removesuffix("ms")) > 0
    assert float(ttft.split()[0]) == pytest.approx(float(average), rel=0.05)
    assert errors.unexpected() == []


def test_history_hides_the_ui_s_own_requests_until_asked(server: ServerProcess, new_page: Any) -> None:
    page, errors = new_page()
    page.goto(server.url + "/ui/#/metrics")  # the UI polls /metrics: its own requests
    wait_until(lambda: any(i["path"] == "/metrics" for i in httpx.get(
        server.url + "/api/history", params={"content": "false", "limit": 200}, timeout=10).json()["items"]))
    _chat(server.url)
    wait_until(lambda: httpx.get(server.url + "/api/history", params={"path": "/api/chat", "limit": 1},
                                 timeout=10).json()["items"])
    page.goto(server.url + "/ui/#/history")
    rows = page.locator(".history-table tbody tr")
    rows.filter(has_text="/api/chat").first.wait_for()
    shown = rows.all_inner_texts()
    # this test's own /api/history polls (httpx, unmarked) stay; the page's /metrics scrapes and the page go
    assert not [r for r in shown if "/metrics" in r or "GET /ui" in r], shown
    page.get_by_label("Show the web UI's own requests").check()
    rows.filter(has_text="/metrics").first.wait_for()
    assert rows.filter(has_text="/api/chat").count() >= 1
    page.get_by_label("Show the web UI's own requests").uncheck()
    wait_until(lambda: rows.count() > 0 and rows.filter(has_text="/metrics").count() == 0)
    assert errors.unexpected() == []
