"""Issue 13, cross-site requests and DNS rebinding: the Host allow-list and Origin check, JSON bodies
whatever the Content-Type, client addresses from trusted proxies only, pulls of private URLs and
files on the server's disk (admin only), and create FROM <path> telling nothing to non-admins."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from deskml.api.middleware.guard import ClientAddress, HostPolicy, OriginPolicy, same_origin, split_host
from deskml.app import create_app
from deskml.core.errors import Forbidden
from deskml.core.principal import ALL_SCOPES
from deskml.runtime.hub.netguard import guard_client, is_public
from deskml.services.auth import CredentialStore
from deskml.services.db import Database
from tests.conftest import MODEL, ServerProcess, free_port, make_settings

EVIL = {"Origin": "https://evil.example", "Content-Type": "text/plain"}


def wait_for(get: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Loopback bind, no keys: the default set-up, where the anonymous caller has every scope."""
    settings = make_settings(tmp_path_factory.mktemp("web"), history_flush_seconds=0.05)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


# -- cross-site "simple" requests --------------------------------------------------------------


def test_a_foreign_page_can_no_longer_drive_the_server_with_simple_requests(client: TestClient) -> None:
    attempts = [
        ("/api/copy", {"source": MODEL, "destination": "evil-copy"}),
        ("/api/keys", {"name": "evil-key", "scopes": ["admin"]}),
        ("/api/admin/pair", {"name": "evil-phone", "scopes": "all"}),
        ("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}),
    ]
    for path, body in attempts:
        response = client.post(path, content=json.dumps(body), headers=EVIL)
        assert response.status_code == 403, (path, response.status_code, response.text)
        error = response.json()["error"]
        assert "https://evil.example" in error and "DESKML_ORIGINS" in error
        assert "access-control-allow-origin" not in response.headers
        assert response.headers.get("x-request-id")
    # Nothing happened: no copy, no key.
    assert "evil-copy:latest" not in [m["name"] for m in client.get("/api/tags").json()["models"]]
    assert all(k["name"] not in {"evil-key", "evil-phone"} for k in client.get("/api/keys").json()["keys"])


def test_other_methods_and_a_preflight_from_a_foreign_origin_are_refused_too(client: TestClient) -> None:
    assert client.get("/api/history", headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.delete("/api/delete", headers={"Origin": "https://evil.example"}).status_code == 403
    preflight = client.options("/api/chat", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 403
    # The OpenAI dialect gets its own error shape.
    body = client.post("/v1/chat/completions", content="{}", headers=EVIL).json()
    assert body["error"]["type"] == "permission_error" and "evil.example" in body["error"]["message"]


def test_local_pages_app_shells_same_origin_and_no_origin_keep_working(client: TestClient) -> None:
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000", "tauri://localhost",
                   "app://deskml", "capacitor://localhost", "file://"):
        response = client.get("/api/tags", headers={"Origin": origin})
        assert response.status_code == 200, origin
        assert response.headers["access-control-allow-origin"] == origin
    # The web UI served by this server posts with its own origin (TestClient's host is "testserver").
    same = client.post("/api/show", json={"model": MODEL}, headers={"Origin": "http://testserver"})
    assert same.status_code == 200
    assert client.post("/api/show", json={"model": MODEL}).status_code == 200  # curl, SDKs: no Origin
    preflight = client.options("/api/chat", headers={"Origin": "http://localhost:5173",
                                                     "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_the_null_origin_is_refused_unless_listed(tmp_path: Path, client: TestClient) -> None:
    # Any site can send Origin: null from a sandboxed iframe, so file:// pages' "null" is not implied.
    assert client.post("/api/show", json={"model": MODEL}, headers={"Origin": "null"}).status_code == 403
    policy = OriginPolicy(make_settings(tmp_path, origins=["null", "https://Chat.Example.com/"]))
    assert policy.allows("null", "localhost", 11434)
    assert policy.allows("https://chat.example.com", "localhost", 11434)
    assert not policy.allows("https://evil.example", "localhost", 11434)
    assert OriginPolicy(make_settings(tmp_path, origins=["*"])).allows("https://evil.example", "x", None)


# -- DNS rebinding: the Host header -----------------------------------------------------------


def test_a_rebinding_host_cannot_read_the_history(client: TestClient) -> None:
    for host in ("attacker.example", "attacker.example:11434", "127.0.0.1.nip.io", "localhost.evil.com"):
        response = client.get("/api/history", headers={"Host": host})
        assert response.status_code == 403, host
        assert "DESKML_ALLOWED_HOSTS" in response.json()["error"]
    for host in ("localhost", "localhost:11434", "127.0.0.1:11434", "127.0.0.2", "[::1]:11434", "app.localhost",
                 "LOCALHOST."):
        assert client.get("/api/history", headers={"Host": host}).status_code == 200, host


def test_a_refused_request_is_still_recorded_with_its_request_id(client: TestClient) -> None:
    refused = client.get("/api/tags", headers={"Host": "rebind.attacker.example"})
    assert refused.status_code == 403
    request_id = refused.headers["x-request-id"]

    def found() -> list[dict[str, Any]]:
        items = client.get("/api/history", params={"path": "/api/tags", "status": "403"}).json()["items"]
        return [i for i in items if i["request_id"] == request_id]

    rows = wait_for(found)
    assert rows and rows[0]["status"] == 403 and "rebind.attacker.example" in rows[0]["error"]


def test_host_policy_on_loopback_and_network_binds(tmp_path: Path) -> None:
    loopback = HostPolicy(make_settings(tmp_path, allowed_hosts=["desk.example.lan", "*.corp.lan"]))
    assert loopback.allows("localhost") and loopback.allows("127.0.0.1") and loopback.allows("::1")
    assert loopback.allows("desk.example.lan") and loopback.allows("a.b.corp.lan")
    assert not loopback.allows("corp.lan.evil.com") and not loopback.allows("attacker.example")
    assert not loopback.allows("192.168.1.5")  # a loopback server is not reached by its LAN address
    assert not loopback.allows("testserver") or "testserver" in make_settings(tmp_path).allowed_hosts

    lan = HostPolicy(make_settings(tmp_path, host="0.0.0.0"), machine_names={"desk", "desk.local"})
    for host in ("desk", "desk.local", "192.168.1.5", "10.0.0.7", "fe80::1", "localhost", "0.0.0.0"):
        assert lan.allows(host), host
    assert not lan.allows("attacker.example") and not lan.allows("desk.attacker.example")
    bound = HostPolicy(make_settings(tmp_path, host="192.168.1.5"), machine_names=set())
    assert bound.allows("192.168.1.5") and not bound.allows("evil.example")
    assert HostPolicy(make_settings(tmp_path, allowed_hosts=["*"])).allows("anything.example")


def test_host_and_origin_parsing() -> None:
    assert split_host("Example.LAN:8080") == ("example.lan", 8080)
    assert split_host("[::1]:11434") == ("::1", 11434)
    assert split_host("[fe80::1]") == ("fe80::1", None)
    assert split_host("::1") == ("::1", None)
    assert split_host("desk.local.") == ("desk.local", None)
    assert same_origin("http://192.168.1.5:11434", "192.168.1.5", 11434)
    assert same_origin("https://desk.lan", "desk.lan", None)  # behind a TLS proxy that keeps the Host
    assert same_origin("http://[fe80::1]:11434", "fe80::1", 11434)
    assert not same_origin("http://192.168.1.5:8080", "192.168.1.5", 11434)
    assert not same_origin("http://desk.lan:8080", "desk.lan", None)
    assert not same_origin("https://evil.example", "desk.lan", None)
    assert not same_origin("not a url", "desk.lan", None)


# -- JSON whatever the Content-Type -----------------------------------------------------------


@pytest.mark.slow  # the real model
@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/x-ndjson", "text/plain", ""])
def test_json_bodies_are_read_whatever_the_content_type(client: TestClient, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "stream": False,
            "options": {"num_predict": 4, "temperature": 0}}
    response = client.post("/api/chat", content=json.dumps(chat), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["message"]["role"] == "assistant" and response.json()["done"] is True
    openai_body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4,
                   "temperature": 0}
    response = client.post("/v1/chat/completions", content=json.dumps(openai_body), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


def test_invalid_json_with_an_odd_content_type_is_a_clear_400(client: TestClient) -> None:
    response = client.post("/api/chat", content=b"not json", headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400 and "invalid JSON" in response.json()["error"]


def test_blob_uploads_stay_raw(client: TestClient) -> None:
    data = b"GGUF" + bytes(range(256)) * 4  # not JSON: it must reach the store untouched
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    response = client.post(f"/api/blobs/{digest}", content=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    assert client.head(f"/api/blobs/{digest}").status_code == 200
    wrong = client.post("/api/blobs/sha256:" + "0" * 64, content=data,
                        headers={"Content-Type": "application/octet-stream"})
    assert wrong.status_code == 400  # hashed as raw bytes, so a wrong digest is still caught


# -- X-Forwarded-For / X-Real-IP ---------------------------------------------------------------


@pytest.mark.slow  # a server subprocess
def test_rotating_x_forwarded_for_from_loopback_neither_dodges_the_rate_limit_nor_forges_the_log(
        tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"DESKML_RATE_LIMIT_REQUESTS_PER_MINUTE": "3",
                                          "DESKML_HISTORY_FLUSH_SECONDS": "0.05"})
    try:
        server.wait_ready()
        time.sleep(1.1)  # wait_ready's probes are free (/api/version), but start a fresh window anyway
        statuses = []
        for i in range(5):
            response = httpx.get(server.url + "/api/tags", headers={"X-Forwarded-For": f"203.0.113.{i + 1}",
                                                                    "X-Real-IP": f"198.51.100.{i + 1}"})
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429, 429]

        def rows() -> list[tuple[str, int]]:  # read the database itself: /api/history is rate limited too
            with contextlib.closing(sqlite3.connect(tmp_path / "deskml.db")) as db:
                found = db.execute("SELECT client, status FROM request_history WHERE path = '/api/tags'").fetchall()
            return found if len(found) >= 5 else []

        assert sorted(wait_for(rows)) == [("127.0.0.1", 200)] * 3 + [("127.0.0.1", 429)] * 2
        access = [json.loads(line) for line in server.log().splitlines() if '"/api/tags"' in line]
        assert access and {line.get("client") for line in access} == {"127.0.0.1"}
        assert "203.0.113." not in server.log() and "198.51.100." not in server.log()
    finally:
        server.stop()


def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trusted_proxies=["10.0.0.0/8"], rate_limit_requests_per_minute=2,
                             history_flush_seconds=0.05)
    app = create_app(settings)
    with TestClient(app, client=("10.1.2.3", 40000)) as proxied:
        for i in range(4):  # four clients behind the proxy, each within its own limit
            response = proxied.get("/api/tags", headers={"X-Forwarded-For": f"203.0.113.{i + 1}, 10.9.9.9"})
            assert response.status_code == 200
        assert proxied.get("/api/tags", headers={"X-Real-IP": "198.51.100.7"}).status_code == 200

        def rows() -> list[dict[str, Any]]:
            items = proxied.get("/api/history", params={"path": "/api/tags"}).json()["items"]
            return items if len(items) >= 5 else []

        clients = {row["client"] for row in wait_for(rows)}
        assert clients == {"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "198.51.100.7"}
    with TestClient(create_app(make_settings(tmp_path / "b", trusted_proxies=["10.0.0.0/8"],
                                             rate_limit_requests_per_minute=2))) as direct:
        # The peer ("testclient") is no proxy: its headers are ignored and its own limit applies.
        statuses = [direct.get("/api/tags", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                    for i in range(3)]
        assert statuses == [200, 200, 429]


def test_forwarded_chain_is_read_from_the_right() -> None:
    guard = ClientAddress(lambda *a: None, ["10.0.0.0/8", "::1"])  # type: ignore[arg-type, return-value]
    assert guard.forwarded([(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4, 10.0.0.9")]) == ("1.2.3.4", None)
    assert guard.forwarded([(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]) == ("10.0.0.1", None)
    assert guard.forwarded([(b"x-forwarded-for", b"1.2.3.4, junk")]) == (None, None)
    assert guard.forwarded([(b"x-real-ip", b"1.2.3.4"), (b"x-forwarded-proto", b"https")]) == ("1.2.3.4", "https")
    assert guard.trusted("::ffff:10.1.1.1") and guard.trusted("::1") and not guard.trusted("11.0.0.1")


# -- pulls and create from the server's own network and disk ----------------------------------


@pytest.fixture
def keyed(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    """auth=required, a models-scope key (no admin) and an admin key."""
    settings = make_settings(tmp_path, database_url=database_url, auth="required", auth_cache_seconds=0)
    db = Database(database_url)
    db.migrate()
    store = CredentialStore(db)
    _, models_key = store.create_key("ops", frozenset({"models", "inference"}))
    _, admin_key = store.create_key("root", ALL_SCOPES)
    with TestClient(create_app(settings)) as test_client:
        yield (test_client, {"Authorization": f"Bearer {models_key}"}, {"Authorization": f"Bearer {admin_key}"})
    db.close()


def test_pulling_a_private_url_needs_the_admin_scope(keyed: tuple[TestClient, dict[str, str], dict[str, str]]) -> None:
    client, models, admin = keyed
    port = free_port()  # nothing listens: an allowed pull gets as far as "cannot reach"
    for url in (f"http://127.0.0.1:{port}/m.gguf", f"http://localhost:{port}/m.gguf", "http://10.0.0.1:1/m.gguf",
                "http://169.254.169.254/latest/meta-data", "http://[::1]:1/m.gguf"):
        response = client.post("/api/pull", json={"model": url, "stream": False}, headers=models)
        assert response.status_code == 403, (url, response.text)
        assert "admin scope" in response.json()["error"]
    response = client.post("/api/pull", json={"model": f"http://127.0.0.1:{port}/m.gguf"}, headers=admin)
    assert response.status_code == 502 and "cannot reach" in response.json()["error"]


def test_a_setting_lets_everyone_pull_private_urls(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=database_url, auth="required", pull_private_urls=True)
    db = Database(database_url)
    db.migrate()
    _, key = CredentialStore(db).create_key("ops", frozenset({"models"}))
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/pull", json={"model": f"http://127.0.0.1:{free_port()}/m.gguf"},
                               headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 502
    db.close()


def test_a_redirect_to_a_private_address_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "93.184.216.34":
            return httpx.Response(302, headers={"Location": "http://127.0.0.1:9/secret"})
        return httpx.Response(200, content=b"secret")

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True) as client:
            guard_client(client)
            with pytest.raises(Forbidden, match=r"127\.0\.0\.1"):
                await client.get("http://93.184.216.34/model.gguf")

    asyncio.run(run())
    assert is_public("93.184.216.34") and is_public("2606:4700::1111")
    for address in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1"):
        assert not is_public(address), address


def test_files_on_the_servers_disk_tell_a_non_admin_nothing(
        keyed: tuple[TestClient, dict[str, str], dict[str, str]], tmp_path: Path) -> None:
    client, models, admin = keyed
    existing = tmp_path / "real.gguf"
    existing.write_bytes(b"not really a gguf")
    answers = set()
    for path in (str(existing), str(tmp_path / "missing.gguf"), "/etc/passwd", "/nonexistent/dir/x"):
        created = client.post("/api/create", json={"model": "probe", "from": path, "stream": False}, headers=models)
        pulled = client.post("/api/pull", json={"model": path, "stream": False}, headers=models)
        assert created.status_code == 403 and pulled.status_code == 403, (path, created.text, pulled.text)
        answers.add((created.text, pulled.text))
    assert len(answers) == 1  # the same answer whether the file exists, is readable, or not
    # Model names with a slash are still model names, not paths.
    assert client.post("/api/create", json={"model": "probe", "from": "hf.co/nobody/nothing:latest"},
                       headers=models).status_code == 404
    # An admin still creates from a path, and learns what is wrong with it.
    missing = client.post("/api/create", json={"model": "probe", "from": str(tmp_path / "missing.gguf")},
                          headers=admin)
    assert missing.status_code == 400 and "missing.gguf" in missing.json()["error"]
    response = client.post("/api/create", json={"model": "probe", "from": str(existing), "stream": False},
                           headers=admin)
    assert response.status_code == 400 and "not a GGUF" in response.json()["error"]


def test_compose_lets_the_other_containers_reach_deskml_by_its_service_name(tmp_path: Path) -> None:
    import yaml

    root = Path(__file__).resolve().parent.parent
    env = yaml.safe_load((root / "compose.yaml").read_text())["services"]["deskml"]["environment"]
    target = yaml.safe_load((root / "deploy" / "prometheus.yml").read_text())["scrape_configs"][0]
    host, _port = split_host(target["static_configs"][0]["targets"][0])
    settings = make_settings(tmp_path, host="0.0.0.0", allowed_hosts=env["DESKML_ALLOWED_HOSTS"])
    assert HostPolicy(settings, machine_names=set()).allows(host)
