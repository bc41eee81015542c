"""SDK placeholder keys on an open loopback server: the `openai` client refuses an empty key, so apps
send "x" or "ollama". Where anonymous callers may do everything, such a key must work; a real deskml
key that fails still gets 401."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings


def test_placeholder_keys_are_anonymous_where_anonymous_is_allowed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    with TestClient(create_app(make_settings(tmp_path, database_url=url, auth="auto"))) as client:
        for placeholder in ("x", "ollama", "sk-no-key-required", "lm-studio"):
            r = client.get("/api/tags", headers={"Authorization": f"Bearer {placeholder}"})
            assert r.status_code == 200, (placeholder, r.text)
        fake = client.get("/api/tags", headers={"Authorization": "Bearer dk_nosuchid_" + "B" * 43})
        assert fake.status_code == 401
        forged = client.get("/api/tags", headers={"Authorization": "Bearer a.b.c"})
        assert forged.status_code == 401


def test_placeholder_keys_are_refused_when_auth_is_required(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    with TestClient(create_app(make_settings(tmp_path, database_url=url, auth="required"))) as client:
        assert client.get("/api/tags", headers={"Authorization": "Bearer x"}).status_code == 401
