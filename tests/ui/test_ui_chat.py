"""The chat page in a real browser against a `deskml serve` subprocess on the bundled SmolLM2: a reply
streams token by token, Stop cancels it on the server (its slot is free again in /api/ps and the
history records the client leaving), conversations survive a reload, a huge pasted prompt gets the
server's error without freezing the page, and a phone-sized screen can chat."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.ui.conftest import running_requests, shot, wait_js, wait_until

pytestmark = pytest.mark.e2e

# Records every length the reply's text had, with a timestamp, as the page updates it.
WATCH_REPLY = """() => {
  window.__lengths = [];
  const log = document.querySelector('.messages');
  new MutationObserver(() => {
    const replies = log.querySelectorAll('.msg.assistant .msg-text');
    const last = replies[replies.length - 1];
    if (last) window.__lengths.push([performance.now(), last.textContent.length]);
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""


STORY = "Write a very long story about a dragon who learns to code. Make it at least 2000 words."


def open_chat(page: Any, url: str) -> None:
    page.goto(url + "/ui/#/chat")
    wait_js(page, "document.querySelector('.model-select')?.value === 'smollm2:135m'")


def set_param(page: Any, label: str, value: str) -> None:
    if page.get_by_role("button", name="Settings").get_attribute("aria-expanded") != "true":
        page.get_by_role("button", name="Settings").click()
    page.get_by_label(label, exact=True).fill(value)


def reply_text(page: Any) -> str:
    return str(page.locator(".msg.assistant .msg-text").last.inner_text())


def test_reply_streams_token_by_token_and_stop_frees_the_slot(ui_server: ServerProcess, new_page: Any) -> None:
    page, errors = new_page()
    open_chat(page, ui_server.url)
    set_param(page, "Max tokens", "3000")
    set_param(page, "Temperature", "0")  # a long story, the same each run
    page.evaluate(WATCH_REPLY)
    page.get_by_label("Message", exact=True).fill(STORY)
    page.get_by_label("Message", exact=True).press("Enter")

    stop = page.get_by_role("button", name="Stop")
    stop.wait_for(state="visible")
    wait_until(lambda: len(reply_text(page)) > 60, timeout=120)
    assert running_requests(ui_server.url) == 1  # decoding on the server right now
    lengths = page.evaluate("window.__lengths.map(x => x[1])")
    growing = sorted(set(lengths))
    assert len(growing) >= 5, f"the reply arrived in too few pieces: {growing}"
    # (rendered markdown may shorten for a moment, e.g. "2." becoming a list item, but it grows)
    assert lengths[-1] > lengths[0]

    stop.click()
    started = time.monotonic()
    wait_until(lambda: running_requests(ui_server.url) == 0, timeout=10)
    freed_in = time.monotonic() - started
    page.get_by_role("button", name="Send").wait_for(state="visible")
    stopped_at = reply_text(page)
    time.sleep(1.0)
    assert reply_text(page) == stopped_at  # nothing more arrives
    stats = page.locator(".msg.assistant .msg-stats").last.inner_text()
    assert "stopped" in stats and "TTFT" in stats
    assert freed_in < 10
    # the server saw the client leave mid-stream (it cancelled the generation rather than finishing it)
    def cut_short() -> bool:
        items = httpx.get(ui_server.url + "/api/history", params={"limit": 20}, timeout=10).json()["items"]
        chats = [i for i in items if i["path"] == "/api/chat"]
        return bool(chats) and chats[0]["error"] == "client disconnected"
    wait_until(cut_short, timeout=60)  # the history writer's batches lag on a loaded machine

    # a short reply completes with its figures; Cyrillic round-trips
    set_param(page, "Max tokens", "24")
    page.get_by_label("Message", exact=True).fill("Привет! Скажи «здравствуй».")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=120_000)
    wait_js(page, "document.querySelectorAll('.msg.assistant .msg-stats')[1]?.textContent.includes('tok/s')")
    last_stats = page.locator(".msg.assistant .msg-stats").last.inner_text()
    assert "TTFT" in last_stats and "tok/s" in last_stats and "tokens" in last_stats
    assert "Привет! Скажи «здравствуй»." in page.locator(".msg.user").last.inner_text()
    page.get_by_role("button", name="Settings").click()  # closed, so the picture shows the whole talk
    assert page.get_by_role("button", name="Settings").get_attribute("aria-expanded") == "false"
    shot(page, "chat")

    # kept server-side: a fresh page lists the conversation and opens it with all four messages
    convs = httpx.get(ui_server.url + "/api/conversations", timeout=10).json()["conversations"]
    assert len(convs) == 1 and convs[0]["message_count"] == 4
    assert convs[0]["title"].startswith("Write a very long story")
    fresh, _ = new_page()
    open_chat(fresh, ui_server.url)
    fresh.locator(".conv-open", has_text="Write a very long story").click()
    wait_js(fresh, "document.querySelectorAll('.messages .msg').length === 4")
    assert "stopped" in fresh.locator(".msg.assistant .msg-stats").first.inner_text()
    assert errors.unexpected() == []


def test_huge_prompt_gets_the_servers_error_and_the_page_stays_responsive(ui_server: ServerProcess,
                                                                           new_page: Any) -> None:
    page, errors = new_page()
    open_chat(page, ui_server.url)
    # 1.2 million characters: more than DESKML_MAX_PROMPT_CHARS, pasted at once
    page.evaluate("""() => {
      const input = document.querySelector('.composer-input');
      input.value = 'Привет мир. '.repeat(100000);
      input.dispatchEvent(new Event('input'));
    }""")
    assert "1,200,000 characters" in page.locator(".composer-count").inner_text()
    page.get_by_role("button", name="Send").click()
    error = page.locator(".msg.assistant .error-box").last
    error.wait_for(timeout=60_000)
    assert "HTTP 400" in error.inner_text() and "characters" in error.inner_text()
    # the page answers at once, the long message is shown cut with a button for the rest
    started = time.monotonic()
    assert page.evaluate("1 + 1") == 2
    assert time.monotonic() - started < 1.0
    assert page.get_by_role("button", name="Show all 1,200,000 characters").is_visible()
    assert errors.unexpected("Failed to load resource") == []


def test_phone_viewport_chat_is_usable(ui_server: ServerProcess, new_page: Any) -> None:
    page, errors = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                            device_scale_factor=2)
    open_chat(page, ui_server.url)
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    box = page.get_by_label("Message", exact=True).bounding_box()
    send = page.get_by_role("button", name="Send").bounding_box()
    assert box and send and box["y"] + box["height"] <= 844 and send["x"] + send["width"] <= width
    assert box["width"] > 200
    # the page menu opens from the top bar and closes after a choice
    assert not page.get_by_role("link", name="Vision").is_visible()
    page.get_by_role("button", name="Menu").tap()
    assert page.get_by_role("link", name="Vision").is_visible()
    page.get_by_role("button", name="Menu").tap()
    set_param(page, "Max tokens", "16")
    page.get_by_role("button", name="Settings").tap()
    page.get_by_label("Message", exact=True).fill("Hi! Reply in one short sentence.")
    page.get_by_role("button", name="Send").tap()
    page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=120_000)
    wait_js(page, "document.querySelector('.msg.assistant .msg-stats')?.textContent.includes('tok/s')")
    assert reply_text(page).strip()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, "chat-phone")
    page.get_by_role("button", name="Chats").tap()
    page.locator(".chat-side.open").wait_for()
    page.locator(".chat-side .conv-open").first.wait_for()
    time.sleep(0.4)  # the drawer slides in
    shot(page, "chat-phone-conversations")
    assert errors.unexpected() == []
