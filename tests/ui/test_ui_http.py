"""The web UI over HTTP, in process: `/` for browsers and for API clients, the static files under
`/ui` (package data, public, security headers, no path escape), the vendored libraries and the
conversations API (per principal, on SQLite and in CI on PostgreSQL and MariaDB)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from fastapi.testclient import TestClient

from deskml.api.ui.static import WEB_DIR
from deskml.app import create_app
from deskml.core.principal import ALL_SCOPES
from deskml.services.auth import CredentialStore
from deskml.services.conversations import MAX_MESSAGES_BYTES
from deskml.services.db import Database
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_root_sends_browsers_to_the_ui_and_api_clients_get_ollamas_text(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        browser = client.get("/", headers=html, follow_redirects=False)
        assert browser.status_code == 303 and browser.headers["location"] == "/ui/"
        for accept in ("*/*", "application/json", ""):
            plain = client.get("/", headers={"Accept": accept} if accept else {})
            assert plain.status_code == 200 and plain.text == "Ollama is running"
        assert client.head("/", headers={"Accept": "text/html"}).status_code == 200

        bare = client.get("/ui", follow_redirects=False)
        assert bare.status_code == 308 and bare.headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="js/main.js">' in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
        module = client.get("/ui/js/main.js")
        assert module.status_code == 200 and "javascript" in module.headers["content-type"]
        assert client.get("/ui/js/main.js", headers={"If-None-Match": module.headers["etag"]}).status_code == 304
        for escape in ("/ui/../pyproject.toml", "/ui/%2e%2e/app.py", "/ui/..%2Fsettings.py"):
            assert client.get(escape).status_code == 404, escape
        assert client.get("/ui/nope.js").status_code == 404


def test_ui_files_are_public_but_the_api_behind_them_is_not(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth="required")
    with TestClient(create_app(settings)) as client:
        assert client.get("/ui/").status_code == 200  # the login page must load without a key
        assert client.get("/ui/js/api.js").status_code == 200
        assert client.get("/api/conversations").status_code == 401
        assert client.get("/").text == "Ollama is running"


def test_every_web_file_is_package_data_and_every_import_resolves() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["deskml"]
    package = WEB_DIR.parent
    files = {p.relative_to(package).as_posix() for p in WEB_DIR.rglob("*") if p.is_file()}
    shipped = {p.relative_to(package).as_posix() for pattern in patterns for p in package.glob(pattern)}
    assert files and files - shipped == set()
    # relative ES module imports point at files that exist (a typo would only show in a browser)
    for module in WEB_DIR.rglob("*.js"):
        if "vendor" in module.parts:
            continue
        for target in re.findall(r'^import .*? from "(\.[^"]+)";', module.read_text("utf-8"), re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports {target}"
    index = (WEB_DIR / "index.html").read_text("utf-8")
    for target in re.findall(r'(?:src|href)="([^"#:]+)"', index):
        assert (WEB_DIR / target).is_file(), target


def test_vendored_libraries_match_their_npm_releases_and_carry_licences() -> None:
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor_web.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for folder in ("marked", "dompurify", "highlight"):
        assert (WEB_DIR / "vendor" / folder / "LICENSE").is_file()


def test_conversations_are_kept_per_principal(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=database_url, auth="required", auth_cache_seconds=0)
    db = Database(database_url)
    db.migrate()
    store = CredentialStore(db)
    with TestClient(create_app(settings)) as client:
        _, alice = store.create_key("alice", ALL_SCOPES)
        _, bob = store.create_key("bob", frozenset({"inference"}))
        messages = [
            {"role": "user", "content": "Привет! Как дела?"},
            {"role": "assistant", "content": "Хорошо, спасибо. ```python\nprint(1)\n```",
             "stats": {"tokens": 12, "tokens_per_second": 98.5, "ttft_ms": 41, "total_ms": 180}},
        ]
        created = client.post("/api/conversations", headers=bearer(alice), json={
            "title": "Приветствие", "model": "smollm2:135m", "system": "Be brief.",
            "options": {"temperature": 0.2, "json_mode": True}, "messages": messages})
        assert created.status_code == 201, created.text
        conv = created.json()
        assert conv["title"] == "Приветствие" and conv["message_count"] == 2
        assert conv["messages"][1]["stats"]["tokens_per_second"] == 98.5

        listed = client.get("/api/conversations", headers=bearer(alice)).json()["conversations"]
        assert [c["id"] for c in listed] == [conv["id"]] and "messages" not in listed[0]
        # another caller neither sees nor touches it
        assert client.get("/api/conversations", headers=bearer(bob)).json() == {"conversations": []}
        for method in ("get", "patch", "delete"):
            kwargs = {"json": {"title": "x"}} if method == "patch" else {}
            answer = getattr(client, method)(f"/api/conversations/{conv['id']}", headers=bearer(bob), **kwargs)
            assert answer.status_code == 404 and "not found" in answer.json()["error"]

        more = [*messages, {"role": "user", "content": "И ещё"}]
        patched = client.patch(f"/api/conversations/{conv['id']}", headers=bearer(alice),
                               json={"messages": more, "title": "  "})
        assert patched.status_code == 200
        body = patched.json()
        assert body["message_count"] == 3 and body["title"] == "New chat" and body["system"] == "Be brief."
        assert body["updated_at"] >= conv["updated_at"]
        again = client.get(f"/api/conversations/{conv['id']}", headers=bearer(alice)).json()
        assert [m["content"] for m in again["messages"]] == [m["content"] for m in more]

        bad = client.post("/api/conversations", headers=bearer(alice), json={"messages": [{"role": "robot"}]})
        assert bad.status_code == 400 and "role" in bad.json()["error"]
        huge = "x" * (MAX_MESSAGES_BYTES + 10)
        too_big = client.patch(f"/api/conversations/{conv['id']}", headers=bearer(alice),
                               json={"messages": [{"role": "user", "content": huge}]})
        assert too_big.status_code == 413 and "start a new one" in too_big.json()["error"]

        assert client.delete(f"/api/conversations/{conv['id']}", headers=bearer(alice)).status_code == 204
        assert client.get(f"/api/conversations/{conv['id']}", headers=bearer(alice)).status_code == 404
    db.close()
