"""Auth over HTTP, in process, on SQLite and (in CI) PostgreSQL and MariaDB: keys, scopes, users,
JWT login/refresh/expiry, the error shape of each dialect, and the bind policy."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Request
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.principal import ALL_SCOPES, Principal
from deskml.services.auth import CredentialStore, InsecureBind, anonymous_allowed
from deskml.services.db import Base, Database, alembic_config
from tests.conftest import make_settings

INFERENCE = frozenset({"inference"})
MODELS = frozenset({"models"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start(tmp_path: Path, url: str, **overrides: object) -> tuple[TestClient, CredentialStore]:
    settings = make_settings(tmp_path, database_url=url, **{"auth": "required", "auth_cache_seconds": 0, **overrides})
    db = Database(url)
    db.migrate()
    return TestClient(create_app(settings)), CredentialStore(db)


def test_migrations_create_the_models_schema_and_are_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        assert db.current_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
        # Every table a model declares matches what the migrations built (tables whose models are
        # not imported here are left out of the comparison rather than reported as extra).
        opts = {"compare_type": True,
                "include_object": lambda obj, name, kind, reflected, twin: not (reflected and twin is None)}
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
            tables = set(sa.inspect(conn).get_table_names())
        assert diff == []
        assert {"api_keys", "users", "server_secrets", "request_history"} <= tables
    finally:
        db.close()


def test_missing_invalid_and_revoked_keys_get_401_in_each_dialect_shape(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        _, admin_key = store.create_key("admin", ALL_SCOPES)
        phone, phone_key = store.create_key("phone", INFERENCE)

        missing = client.get("/api/tags")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert set(missing.json()) == {"error"} and "missing API key" in missing.json()["error"]
        openai = client.get("/v1/models").json()["error"]
        assert openai["type"] == "authentication_error" and openai["code"] == "invalid_api_key"
        assert "missing API key" in openai["message"]
        backend = client.post("/api/llm/generate", json={"prompt": "hi"})
        assert backend.status_code == 401 and backend.json()["success"] is False and backend.json()["error"]

        secret_swapped = f"dk_{phone.id}_" + "A" * 43
        for bad in (secret_swapped, "dk_nosuchid_" + "B" * 43, "not-a-key", phone_key + "x"):
            for headers in (bearer(bad), {"X-API-Key": bad}):
                r = client.get("/api/tags", headers=headers)
                assert r.status_code == 401, (bad, r.text)
                assert r.json() == {"error": "invalid or revoked API key"} or "token" in r.json()["error"]

        assert client.get("/api/tags", headers=bearer(phone_key)).status_code == 200
        assert client.get("/api/tags", headers={"X-API-Key": phone_key}).json()["models"]

        # Revoked over HTTP: refused at once. Revoked from another process (the CLI): refused once
        # the cache entry is older than auth_cache_seconds (0 here).
        r = client.delete(f"/api/keys/{phone.id}", headers=bearer(admin_key))
        assert r.status_code == 200 and r.json()["keys"][0]["revoked_at"]
        assert client.get("/api/tags", headers=bearer(phone_key)).json() == {"error": "invalid or revoked API key"}
        _, other_key = store.create_key("other", INFERENCE)
        assert client.get("/api/tags", headers=bearer(other_key)).status_code == 200
        store.revoke_key("other")
        assert client.get("/api/tags", headers=bearer(other_key)).status_code == 401
        listed = client.get("/api/keys?revoked=true", headers=bearer(admin_key)).json()["keys"]
        assert {k["name"] for k in listed} == {"admin", "phone", "other"}
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert next(k for k in listed if k["name"] == "admin")["last_used_at"]


def test_wrong_scope_gets_403_and_public_routes_stay_open(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        _, inference_key = store.create_key("app", INFERENCE)
        _, models_key = store.create_key("ops", MODELS)
        for method, path in (("DELETE", "/api/delete"), ("POST", "/api/create"), ("POST", "/api/pull"),
                             ("POST", "/api/copy")):
            r = client.request(method, path, json={"model": "x"}, headers=bearer(inference_key))
            assert r.status_code == 403, (path, r.text)
            assert "'models' scope" in r.json()["error"]
        for path in ("/api/history", "/api/keys", "/api/users"):
            r = client.get(path, headers=bearer(inference_key))
            assert r.status_code == 403 and "'admin' scope" in r.json()["error"]
        r = client.post("/api/chat", json={"model": "smollm2", "messages": []}, headers=bearer(models_key))
        assert r.status_code == 403 and "'inference' scope" in r.json()["error"]
        openai = client.get("/v1/models", headers=bearer(models_key))
        assert openai.status_code == 403 and openai.json()["error"]["type"] == "permission_error"
        backend = client.post("/api/llm/generate", json={"prompt": "x"}, headers=bearer(models_key))
        assert backend.status_code == 403 and backend.json()["success"] is False
        # A models key may remove models: it gets past auth to the handler's own 404.
        r = client.request("DELETE", "/api/delete", json={"model": "no-such-model"}, headers=bearer(models_key))
        assert r.status_code == 404 and "not found" in r.json()["error"]

        assert client.get("/").text == "Ollama is running"
        assert client.get("/api/version").status_code == 200
        # A stale key must not break version probes (the ollama client sends its key everywhere).
        assert client.get("/api/version", headers=bearer("dk_stale_key")).status_code == 200
        preflight = client.options("/api/chat", headers={"Origin": "http://localhost:3000",
                                                         "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200


def test_login_refresh_and_expired_or_forged_tokens(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        store.create_user("alice", "correct horse", INFERENCE)
        assert client.post("/login", json={"username": "alice", "password": "wrong pass"}).status_code == 401
        assert client.post("/login", json={"username": "nobody", "password": "whatever1"}).status_code == 401
        tokens = client.post("/login", json={"username": "alice", "password": "correct horse"}).json()
        assert tokens["token_type"] == "bearer" and tokens["scopes"] == ["inference"]
        assert tokens["expires_in"] == 3600
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        assert client.get("/api/tags", headers=bearer(access)).status_code == 200
        assert client.get("/api/keys", headers=bearer(access)).status_code == 403
        # A refresh token is not an access token, and vice versa.
        assert client.get("/api/tags", headers=bearer(refresh)).json() == {"error": "not an access token"}
        assert client.post("/login/refresh", json={"refresh_token": access}).status_code == 401
        renewed = client.post("/login/refresh", json={"refresh_token": refresh}).json()
        assert client.get("/api/tags", headers=bearer(renewed["access_token"])).status_code == 200

        signing_key = store.signing_key()
        now = int(time.time())
        expired = jwt.encode({"iss": "deskml", "sub": "alice", "typ": "access", "iat": now - 7200, "exp": now - 60},
                             signing_key, algorithm="HS256")
        r = client.get("/api/tags", headers=bearer(expired))
        assert r.status_code == 401 and "expired" in r.json()["error"]
        assert client.get("/v1/models", headers=bearer(expired)).json()["error"]["type"] == "authentication_error"
        forged = jwt.encode({"iss": "deskml", "sub": "alice", "typ": "access", "iat": now, "exp": now + 600},
                            "not-the-server-key-but-long-enough-for-hs256", algorithm="HS256")
        assert client.get("/api/tags", headers=bearer(forged)).json() == {"error": "invalid token"}

        store.delete_user("alice")
        assert client.get("/api/tags", headers=bearer(renewed["access_token"])).status_code == 401
        assert client.post("/login/refresh", json={"refresh_token": refresh}).status_code == 401


def test_tokens_expire_after_the_configured_lifetime(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url, jwt_expires=1)
    with client:
        store.create_user("bob", "password123")
        token = client.post("/login", json={"username": "bob", "password": "password123"}).json()["access_token"]
        assert client.get("/api/tags", headers=bearer(token)).status_code == 200
        time.sleep(2.1)  # PyJWT compares whole seconds
        r = client.get("/api/tags", headers=bearer(token))
        assert r.status_code == 401 and "expired" in r.json()["error"]


def test_admin_api_creates_keys_shown_once_and_users(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    with client:
        _, admin_key = store.create_key("root", ALL_SCOPES)
        made = client.post("/api/keys", json={"name": "tablet", "scopes": ["inference"],
                                              "limits": {"requests_per_minute": 5}}, headers=bearer(admin_key))
        assert made.status_code == 201 and made.json()["key"].startswith("dk_")
        assert client.get("/api/tags", headers=bearer(made.json()["key"])).status_code == 200
        dup = client.post("/api/keys", json={"name": "tablet"}, headers=bearer(admin_key))
        assert dup.status_code == 409
        bad = client.post("/api/keys", json={"name": "x", "scopes": ["root"]}, headers=bearer(admin_key))
        assert bad.status_code == 400 and "unknown scope" in bad.json()["error"]
        listed = client.get("/api/keys", headers=bearer(admin_key)).json()["keys"]
        tablet = next(k for k in listed if k["name"] == "tablet")
        assert tablet["limits"] == {"requests_per_minute": 5} and "key" not in tablet
        user = client.post("/api/users", json={"username": "carol", "password": "longenough"},
                           headers=bearer(admin_key))
        assert user.status_code == 201 and user.json()["scopes"] == sorted(ALL_SCOPES)
        assert client.post("/login", json={"username": "carol", "password": "longenough"}).status_code == 200
        assert client.delete("/api/users/carol", headers=bearer(admin_key)).status_code == 204
        assert client.get("/api/users", headers=bearer(admin_key)).json() == {"users": []}


def test_principal_reaches_request_state_with_limits(database_url: str, tmp_path: Path) -> None:
    client, store = start(tmp_path, database_url)
    seen: list[Principal] = []

    async def whoami(request: Request) -> dict[str, object]:
        principal: Principal = request.state.principal
        seen.append(principal)
        return {"id": principal.id, "kind": principal.kind, "scopes": sorted(principal.scopes)}

    client.app.add_api_route("/api/whoami-test", whoami, methods=["GET"])  # type: ignore[attr-defined]
    with client:
        info, key = store.create_key("limited", INFERENCE, {"requests_per_minute": 3})
        body = client.get("/api/whoami-test", headers=bearer(key)).json()
        assert body == {"id": info.id, "kind": "key", "scopes": ["inference"]}
        assert seen[-1].limits == {"requests_per_minute": 3}


def test_loopback_auto_mode_lets_anonymous_in_but_refuses_bad_keys(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # auth=auto on 127.0.0.1
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/tags").status_code == 200
        assert client.get("/api/keys").status_code == 200  # anonymous on loopback has every scope
        r = client.get("/api/tags", headers=bearer("dk_bad_key"))
        assert r.status_code == 401 and r.json() == {"error": "invalid or revoked API key"}


@pytest.mark.parametrize(
    ("host", "mode", "insecure", "credentials", "expected"),
    [
        ("127.0.0.1", "auto", False, 0, True),
        ("::1", "auto", False, 3, True),
        ("127.0.0.1", "required", False, 0, False),
        ("0.0.0.0", "auto", False, 1, False),
        ("0.0.0.0", "auto", True, 0, True),
        ("0.0.0.0", "auto", True, 2, False),
        ("192.168.1.20", "optional", True, 2, True),
        ("0.0.0.0", "off", True, 0, True),
        ("0.0.0.0", "auto", False, 0, InsecureBind),
        ("0.0.0.0", "required", False, 0, InsecureBind),
        ("0.0.0.0", "optional", False, 5, InsecureBind),
        ("10.0.0.5", "off", False, 5, InsecureBind),
    ],
)
def test_bind_policy(tmp_path: Path, host: str, mode: str, insecure: bool, credentials: int,
                     expected: object) -> None:
    settings = make_settings(tmp_path, host=host, auth=mode, insecure=insecure)
    if expected is InsecureBind:
        with pytest.raises(InsecureBind, match="deskml keys create --name"):
            anonymous_allowed(settings, credentials)
    else:
        assert anonymous_allowed(settings, credentials) is expected


def test_signing_key_is_generated_once_and_shared(database_url: str, tmp_path: Path) -> None:
    client_a, store = start(tmp_path / "a", database_url)
    client_b, _ = start(tmp_path / "b", database_url)
    store.create_user("dave", "password123")
    with client_a, client_b:
        token = client_a.post("/login", json={"username": "dave", "password": "password123"}).json()["access_token"]
        assert client_b.get("/api/tags", headers=bearer(token)).status_code == 200
