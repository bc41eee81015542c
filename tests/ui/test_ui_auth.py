"""Signing in and losing the server, in a real browser against `deskml serve` subprocesses: with
DESKML_AUTH=required the UI opens on its login page, a wrong password gets the server's own words,
the right one reaches the chat page with its models, the tokens live in sessionStorage (never in
localStorage) and Sign out forgets them; an API key typed in is kept in memory only. A server that
stops answering brings up the banner with its retry countdown, and the banner goes away by itself
once a server answers on the same address again."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, ServerProcess
from tests.ui.conftest import shot, start_server, wait_js

pytestmark = pytest.mark.e2e

USER, PASSWORD = "alice", "correct horse battery"
JWT = re.compile(r"^[\w-]+\.[\w-]+\.[\w-]+$")
# The seconds the banner's countdown shows now (NaN when it shows none).
BANNER_SECONDS = "Number(document.getElementById('banner').textContent.match(/Retrying in (\\d+) s/)?.[1])"
# Every toast the page shows, kept (they disappear after a few seconds).
WATCH_TOASTS = """() => {
  window.__toasts = [];
  const host = document.getElementById('toasts');
  new MutationObserver(() => host.querySelectorAll('.toast').forEach((t) => {
    if (!window.__toasts.includes(t.textContent)) window.__toasts.push(t.textContent);
  })).observe(host, {childList: true});
}"""


def database_env(data_dir: Path) -> dict[str, str]:
    # the server and the CLI on the same SQLite file, whatever DESKML_DATABASE_URL this shell has
    return {"DESKML_DATA_DIR": str(data_dir), "DESKML_DATABASE_URL": f"sqlite:///{data_dir / 'deskml.db'}"}


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "deskml.cli.main", *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **database_env(data_dir)})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    data_dir = tmp_path_factory.mktemp("auth-server")
    # the way docs/auth.md says: a user and a key made with the CLI before the server starts
    assert f"created user {USER}" in cli(data_dir, "users", "create", USER, "--password-stdin", stdin=PASSWORD + "\n")
    key = cli(data_dir, "keys", "create", "--name", "browser", "--scopes", "inference").strip()
    assert key.startswith("dk_")
    proc = start_server(data_dir, env={"DESKML_AUTH": "required", **database_env(data_dir)})
    try:
        yield proc, key
    finally:
        proc.stop()


def storage(page: Any) -> dict[str, dict[str, str]]:
    return dict(page.evaluate("""() => ({
      local: Object.fromEntries(Object.entries(localStorage)),
      session: Object.fromEntries(Object.entries(sessionStorage)),
    })"""))


def sign_in(page: Any, username: str, password: str) -> None:
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def wait_for_models(page: Any) -> None:
    # the model picker fills from GET /api/tags: an authorized call
    wait_js(page, f"document.querySelector('.model-select')?.value === '{MODEL}'")


def test_login_wrong_password_right_password_and_sign_out(auth_server: tuple[ServerProcess, str],
                                                          new_page: Any) -> None:
    server, _ = auth_server
    assert httpx.get(server.url + "/api/tags", timeout=10).status_code == 401
    page, errors = new_page()
    page.goto(server.url + "/ui/")
    login = page.get_by_role("heading", name="Sign in to deskml")
    login.wait_for()
    assert page.title() == "Sign in · deskml"
    assert not page.locator("#nav").is_visible()  # no page links before signing in
    assert not page.get_by_role("button", name="Sign out").is_visible()
    assert page.locator(".model-select").count() == 0
    shot(page, "login")

    # an empty form is stopped in the page, a wrong password gets the server's answer
    page.get_by_role("button", name="Sign in").click()
    assert "Enter your user name and password." in page.locator(".login-status").inner_text()
    sign_in(page, USER, "not the password")
    error = page.locator(".login-status .error-box")
    error.filter(has_text="wrong user name or password").wait_for()
    assert "HTTP 401" in error.inner_text()
    assert page.get_by_role("button", name="Sign in").is_enabled()
    assert set(storage(page)["session"]) <= {"deskml.next"}  # where to go once signed in; no token
    shot(page, "login-wrong-password")

    sign_in(page, USER, PASSWORD)
    page.locator(".chat").wait_for()
    assert page.evaluate("location.hash") == "#/chat"
    wait_for_models(page)
    assert page.locator("#who").inner_text() == f"Signed in: {USER}"
    assert page.get_by_role("button", name="Sign out").is_visible()
    assert page.get_by_role("link", name="Models").is_visible()
    kept = storage(page)
    # the JWTs are in sessionStorage (gone with the tab); localStorage holds at most the theme
    assert JWT.match(kept["session"]["deskml.access"]) and JWT.match(kept["session"]["deskml.refresh"])
    assert kept["session"]["deskml.user"] == USER
    assert set(kept["local"]) <= {"deskml.theme"}
    assert not any(kept["session"]["deskml.access"] in v or "dk_" in v for v in kept["local"].values())
    assert page.evaluate("document.cookie") == ""
    # the token the page holds is a working one
    access = kept["session"]["deskml.access"]
    assert httpx.get(server.url + "/api/tags", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    shot(page, "signed-in")

    # a reload keeps the session (sessionStorage), another page of the UI works with it
    page.reload()
    wait_for_models(page)
    page.get_by_role("link", name="Models").click()
    page.locator(f"tr[data-model='{MODEL}']").wait_for()

    page.get_by_role("button", name="Sign out").click()
    login.wait_for()
    assert storage(page)["session"] == {}
    assert page.locator("#who").inner_text() == ""
    assert not page.get_by_role("button", name="Sign out").is_visible()
    page.reload()
    login.wait_for()  # signed out for good, not only in this page's memory
    assert set(storage(page)["local"]) <= {"deskml.theme"}
    assert errors.unexpected("Failed to load resource") == []


def test_api_key_sign_in_is_kept_in_memory_only(auth_server: tuple[ServerProcess, str], new_page: Any) -> None:
    server, key = auth_server
    page, errors = new_page()
    page.goto(server.url + "/ui/#/models")
    login = page.get_by_role("heading", name="Sign in to deskml")
    login.wait_for()
    page.get_by_text("Use an API key instead").click()
    page.get_by_label("API key").fill("dk_00000000_" + "0" * 43)
    page.get_by_role("button", name="Use this key").click()
    page.locator(".login-key .error-box", has_text="HTTP 401").wait_for()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use this key").click()
    # back to the page first asked for, listing the models with the key
    page.locator(f"tr[data-model='{MODEL}']").wait_for()
    assert page.evaluate("location.hash") == "#/models"
    assert page.locator("#who").inner_text() == "Signed in: API key"
    kept = storage(page)
    assert set(kept["local"]) <= {"deskml.theme"} and kept["session"] == {}
    assert key not in page.content()
    page.reload()
    login.wait_for()  # memory only: a reload forgets the key
    assert errors.unexpected("Failed to load resource") == []


def test_server_down_shows_the_banner_and_it_goes_when_the_server_is_back(tmp_path: Path, new_page: Any) -> None:
    data_dir = tmp_path / "server"
    server = start_server(data_dir)
    port = server.port
    try:
        page, errors = new_page()
        page.goto(server.url + "/ui/#/chat")
        wait_for_models(page)
        banner = page.locator("#banner")
        assert banner.is_hidden()

        server.stop()
        # the next call finds nobody there: a message sent now
        page.get_by_label("Message", exact=True).fill("Hello?")
        page.get_by_label("Message", exact=True).press("Enter")
        banner.wait_for(state="visible", timeout=15_000)
        text = banner.inner_text()
        assert f"The deskml server at 127.0.0.1:{port} is not responding" in text
        assert re.search(r"Retrying in \d+ s", text), text
        assert banner.get_by_role("button", name="Retry now").is_visible()
        assert banner.get_attribute("role") == "alert"
        page.locator(".msg.assistant .error-box", has_text="not reachable").wait_for()
        page.get_by_role("button", name="Send").wait_for()  # the page is not stuck mid-send
        # the countdown counts down, and the next tries back off (1 s, then 2 s, then 4 s, ...)
        first = int(re.search(r"Retrying in (\d+) s", text).group(1))  # type: ignore[union-attr]
        assert 1 <= first <= 10
        wait_js(page, f"{BANNER_SECONDS} >= 4", timeout=20)
        wait_js(page, f"{BANNER_SECONDS} === 3", timeout=12)  # ticking, once a second
        assert banner.is_visible()
        shot(page, "banner-server-down")

        # a server on the same address again: the retry loop notices without any click
        page.evaluate(WATCH_TOASTS)
        server = start_server(data_dir, port=port)
        banner.wait_for(state="hidden", timeout=30_000)
        assert banner.inner_text() == ""
        wait_js(page, "window.__toasts.includes('The server is back')", timeout=5)
        wait_for_models(page)
        # and the page works again: a reply streams from the new server
        if page.get_by_role("button", name="Settings").get_attribute("aria-expanded") != "true":
            page.get_by_role("button", name="Settings").click()
        page.get_by_label("Max tokens", exact=True).fill("16")
        page.get_by_role("button", name="Settings").click()  # closed again
        page.get_by_label("Message", exact=True).fill("Say hello in one short sentence.")
        page.get_by_role("button", name="Send").click()
        page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=120_000)
        wait_js(page, "[...document.querySelectorAll('.msg.assistant .msg-stats')].pop()"
                      "?.textContent.includes('tok/s')")
        assert page.locator(".msg.assistant .msg-text").last.inner_text().strip()
        assert banner.is_hidden()
        shot(page, "banner-server-back")
        assert errors.unexpected("Failed to load resource", "ERR_CONNECTION_REFUSED") == []
    finally:
        server.stop()
