"""Who sees which jobs and files: the owner (the key or user that submitted), and admins."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.services.auth import CredentialStore, parse_scopes
from deskml.services.db import Database
from tests.conftest import make_settings
from tests.jobs.conftest import upload, wait_job
from tests.jobs.jobdata import batch_jsonl


@pytest.mark.slow  # the real model
def test_jobs_and_files_are_visible_to_their_owner_and_to_admins_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deskml.db'}"
    db = Database(url)
    db.migrate()
    store = CredentialStore(db)
    _, alice = store.create_key("alice", parse_scopes("inference"))
    _, bob = store.create_key("bob", parse_scopes("inference"))
    _, root = store.create_key("root", parse_scopes("all"))
    _, models_only = store.create_key("ops", parse_scopes("models"))
    db.close()
    settings = make_settings(tmp_path, database_url=url, auth="required", auth_cache_seconds=0,
                             jobs_heartbeat_seconds=0.5)
    as_ = {name: {"Authorization": f"Bearer {key}"} for name, key in
           {"alice": alice, "bob": bob, "root": root, "ops": models_only}.items()}
    with TestClient(create_app(settings)) as client:
        file_id = upload(client, batch_jsonl(2, model="wordllama", endpoint="/v1/embeddings"), "a.jsonl",
                         purpose="batch", headers=as_["alice"])["id"]
        batch = client.post("/v1/batches", headers=as_["alice"], json={
            "input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}).json()
        job = wait_job(client, batch["id"], headers=as_["alice"])
        assert job["state"] == "SUCCESS" and job["owner"] != "anonymous"

        # Bob sees none of it: not found, in each dialect's shape, as if it did not exist.
        assert client.get(f"/api/jobs/{batch['id']}", headers=as_["bob"]).status_code == 404
        status = client.get(f"/api/task/{batch['id']}/status", headers=as_["bob"])
        assert status.status_code == 404 and status.json()["success"] is False
        assert client.get(f"/v1/batches/{batch['id']}", headers=as_["bob"]).json()["error"]["code"] == "not_found_error"
        assert client.get(f"/v1/files/{file_id}/content", headers=as_["bob"]).status_code == 404
        assert client.delete(f"/api/jobs/{batch['id']}", headers=as_["bob"]).status_code == 404
        assert client.get("/api/jobs", headers=as_["bob"]).json()["jobs"] == []
        assert client.get("/v1/batches", headers=as_["bob"]).json()["data"] == []
        with_bad_file = client.post("/v1/batches", headers=as_["bob"], json={
            "input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"})
        assert with_bad_file.status_code == 404

        # Alice and an admin see it; an admin sees everyone's jobs, or only their own with mine=true.
        assert [j["id"] for j in client.get("/api/jobs", headers=as_["alice"]).json()["jobs"]] == [batch["id"]]
        assert batch["id"] in [j["id"] for j in client.get("/api/jobs", headers=as_["root"]).json()["jobs"]]
        assert client.get("/api/jobs", headers=as_["root"], params={"mine": True}).json()["jobs"] == []
        output = client.get(f"/v1/batches/{batch['id']}", headers=as_["root"]).json()["output_file_id"]
        assert len(client.get(f"/v1/files/{output}/content", headers=as_["alice"]).text.splitlines()) == 2

        # No key: 401; a key without the inference scope: 403.
        assert client.get("/api/jobs").status_code == 401
        train = client.post("/api/train", json={"dataset": file_id, "config": {}}, headers=as_["ops"])
        assert train.status_code == 403 and train.json()["success"] is False
