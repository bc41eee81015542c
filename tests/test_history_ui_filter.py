"""GET /api/history?ui=false leaves out the web UI's own requests: those it marks with
`X-Deskml-Client: ui` (its polling of /api/ps, /api/tags, /metrics…) and the page itself, which a
browser fetches without the mark; a client's identical request stays."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings, services_of

UI = {"X-Deskml-Client": "ui"}


def test_history_hides_the_ui_s_own_requests_on_request(database_url: str, tmp_path: Path) -> None:
    # every database kind: the filter reads a JSON field, which each dialect spells its own way
    settings = make_settings(tmp_path, history_flush_seconds=0.05, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/tags", headers=UI).status_code == 200
        assert client.get("/api/ps", headers={"x-deskml-client": "UI"}).status_code == 200
        assert client.get("/ui").status_code == 200  # the page: no mark, still the UI's
        assert client.get("/api/tags", headers={"X-Request-Id": "real-client"}).status_code == 200
        assert client.get("/api/version", headers={"X-Deskml-Client": "my-script"}).status_code == 200
        writer = services_of(client.app).history
        deadline = time.monotonic() + 20
        while (writer.written < 5 or writer.buffer) and time.monotonic() < deadline:
            time.sleep(0.05)
        everything = client.get("/api/history", params={"content": "false"}).json()["items"]
        paths = [(i["method"], i["path"]) for i in everything]
        assert ("GET", "/ui") in paths and paths.count(("GET", "/api/tags")) == 2, paths
        marked = [i for i in everything if (i.get("extra") or {}).get("client_app") == "ui"]
        assert {i["path"] for i in marked} >= {"/api/tags", "/api/ps"}
        real = client.get("/api/history", params={"ui": "false", "content": "false"}).json()["items"]
        kept = [(i["path"], i["request_id"]) for i in real]
        assert ("/api/tags", "real-client") in kept and "/api/version" in {p for p, _ in kept}
        assert not {p for p, _ in kept} & {"/ui", "/api/ps"}, kept
        assert len([p for p, _ in kept if p == "/api/tags"]) == 1
        bad = client.get("/api/history", params={"ui": "maybe"})
        assert bad.status_code in {400, 422}
