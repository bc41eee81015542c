"""Jobs on the embedded executor, in process, on the real bundled models: the seed's /api/train and
status polling, classifiers trained and then served, bad datasets, cancellation, progress events."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from tests.conftest import services_of
from tests.jobs.conftest import poll_task, upload, wait_job
from tests.jobs.jobdata import batch_jsonl, intents_csv, intents_jsonl, pattern_image, patterns_zip

SEED_STATUS_KEYS = {"state", "current", "total", "status", "result"}


def test_seed_train_from_the_datasets_folder_polled_like_the_dart_client(
    jobs_client: TestClient, datasets_dir: Path
) -> None:
    (datasets_dir / "intents.csv").write_bytes(intents_csv(40))
    config = {"name": "intent", "epochs": 3}  # the seed's config key; a linear head has no epochs
    response = jobs_client.post("/api/train", json={"dataset": "intents.csv", "config": config})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "task_id", "status_url"}
    assert body["success"] is True and body["status_url"] == f"/api/task/{body['task_id']}/status"

    statuses = poll_task(jobs_client, body["status_url"])
    for status in statuses:
        assert set(status) == SEED_STATUS_KEYS
        assert status["state"] in {"PENDING", "PROGRESS", "SUCCESS", "FAILURE"}
        assert 0 <= status["current"] <= status["total"]
    final = statuses[-1]
    assert final["state"] == "SUCCESS", final
    assert final["status"] == "Completed!"
    result = final["result"]
    assert result["model"] == "intent" and result["kind"] == "text-classify"
    assert result["accuracy"] >= 0.9
    matrix = result["confusion_matrix"]
    assert matrix["labels"] == ["billing", "greeting", "weather"]
    assert len(matrix["matrix"]) == 3 and all(len(row) == 3 for row in matrix["matrix"])
    assert sum(map(sum, matrix["matrix"])) == result["test_size"] == 24
    assert result["train_size"] == 96

    # Served at once: /api/classify and /api/tags.
    reply = jobs_client.post("/api/classify", json={"model": "intent", "input": [
        "will it snow in Oslo on Sunday", "please refund the double charge on my invoice", "hi there, good morning"]})
    assert reply.status_code == 200, reply.text
    labels = [item["label"] for item in reply.json()["results"]]
    assert labels == ["weather", "billing", "greeting"]
    first = reply.json()["results"][0]
    assert first["labels"][0]["label"] == "weather" and len(first["labels"]) == 3
    assert abs(sum(x["score"] for x in first["labels"]) - 1.0) < 1e-3
    tags = {m["name"]: m for m in jobs_client.get("/api/tags").json()["models"]}
    assert "intent:latest" in tags
    single = jobs_client.post("/api/classify", json={"model": "intent:latest", "input": "is it raining in Lima",
                                                     "top_k": 1}).json()
    assert single["results"][0]["label"] == "weather" and len(single["results"][0]["labels"]) == 1


def test_train_refuses_server_paths_outside_the_datasets_folder(jobs_client: TestClient, tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_bytes(intents_csv(5))
    for dataset in (str(outside), "../secret.csv", "/etc/passwd", "sub/../../x.csv"):
        response = jobs_client.post("/api/train", json={"dataset": dataset, "config": {}})
        assert response.status_code == 400, (dataset, response.text)
        assert response.json()["success"] is False and "datasets folder" in response.json()["error"]
    missing = jobs_client.post("/api/train", json={"dataset": "nope.csv", "config": {}})
    assert missing.status_code == 404 and missing.json() == {"success": False, "error": missing.json()["error"]}
    unknown = jobs_client.get("/api/task/does-not-exist/status")
    assert unknown.status_code == 404 and unknown.json()["success"] is False


def test_malformed_datasets_are_400_at_upload_and_at_train(jobs_client: TestClient, datasets_dir: Path) -> None:
    cases = {
        "missing.csv": (b"text,category\nhi,a\nyo,b\n", "lacks the column(s) label"),
        "one.csv": (b"text,label\nhi,a\nyo,a\nhey,a\n", "at least 2 classes"),
        "empty.csv": (b"", "empty"),
        "bad.jsonl": (b'{"text": "hi", "label": "a"}\n{"text": \n', "line 2 is not valid JSON"),
    }
    for name, (data, message) in cases.items():
        response = jobs_client.post("/api/files", files={"file": (name, data)}, data={"purpose": "train"})
        assert response.status_code == 400, (name, response.text)
        assert message in response.json()["error"], (name, response.json())
        if data:
            (datasets_dir / name).write_bytes(data)
            train = jobs_client.post("/api/train", json={"dataset": name, "config": {}})
            assert train.status_code == 400 and message in train.json()["error"], (name, train.text)
    assert jobs_client.get("/api/jobs", params={"state": "PENDING"}).json()["jobs"] == []
    bad_config = jobs_client.post("/api/train", json={"dataset": upload(jobs_client, intents_csv(5))["id"],
                                                      "config": {"test_size": 2}})
    assert bad_config.status_code == 400 and "test_size" in bad_config.json()["error"]
    taken = jobs_client.post("/api/train", json={"dataset": upload(jobs_client, intents_csv(5))["id"],
                                                 "config": {"name": "all-minilm"}})
    assert taken.status_code == 409 and "bundled model" in taken.json()["error"]


def test_a_dataset_that_breaks_while_training_ends_in_failure_with_the_reason(jobs_client: TestClient) -> None:
    import io
    import zipfile

    from PIL import Image

    # A picture whose header is fine (the upload check passes) but that is too large to decode.
    huge = io.BytesIO()
    Image.new("L", (7000, 7000), 128).save(huge, format="PNG")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(patterns_zip(3, top=None))) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, huge.getvalue() if info.filename == "stripes/001.jpg" else src.read(info))
    file_id = upload(jobs_client, out.getvalue(), "broken.zip")["id"]
    task = jobs_client.post("/api/train", json={"dataset": file_id, "config": {"name": "broken"}}).json()
    job = wait_job(jobs_client, task["task_id"])
    assert job["state"] == "FAILURE", job
    assert job["error"].startswith("a picture could not be used: stripes/001.jpg: ")
    assert "7000x7000 pixels" in job["error"]
    status = jobs_client.get(task["status_url"]).json()
    assert status["state"] == "FAILURE" and status["status"] == job["error"]


def test_image_classifier_beats_chance_and_answers_vision_classify(jobs_client: TestClient) -> None:
    file_info = upload(jobs_client, patterns_zip(12), "patterns.zip")
    assert file_info["summary"]["per_class"] == {"checks": 12, "circles": 12, "stripes": 12}
    task = jobs_client.post("/api/train", json={"dataset": file_info["id"], "config": {"name": "patterns"}}).json()
    job = wait_job(jobs_client, task["task_id"])
    assert job["state"] == "SUCCESS", job
    result = job["result"]
    assert result["kind"] == "classify" and result["backbone"] == "efficientnet-lite0"
    assert result["accuracy"] >= result["chance_accuracy"] + 0.3, result
    rng = np.random.default_rng(1234)  # pictures the model has never seen
    right = 0
    for kind in ("circles", "stripes", "checks"):
        for _ in range(3):
            reply = jobs_client.post("/api/vision/classify", files={"image": ("x.jpg", pattern_image(kind, rng))},
                                     data={"model": "patterns"})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["success"] is True and body["model"] == "patterns"
            assert {p["label"] for p in body["predictions"]} == {"circles", "stripes", "checks"}
            right += body["predictions"][0]["label"] == kind
    assert right >= 6, right  # chance is 3 of 9
    # The ImageNet model still answers by default.
    default = jobs_client.post("/api/vision/classify", files={"image": ("x.jpg", pattern_image("checks", rng))})
    assert default.json()["model"] == "efficientnet-lite0"


def test_jsonl_dataset_with_wordllama_and_progress_events(jobs_client: TestClient) -> None:
    file_id = upload(jobs_client, intents_jsonl(30), "intents.jsonl")["id"]
    task = jobs_client.post("/api/train", json={"dataset": file_id, "config": {
        "kind": "text", "name": "intent-wl", "embedding": "wordllama", "C": 10}}).json()
    events: list[tuple[str, dict]] = []
    with jobs_client.stream("GET", f"/api/jobs/{task['task_id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1] == ("end", {"state": "SUCCESS"})
    progress = [data for name, data in events if name == "progress"]
    currents = [p["current"] for p in progress]
    assert currents == sorted(currents) and progress[-1]["state"] == "SUCCESS"
    assert progress[-1]["result"]["embedding"] == "wordllama" and progress[-1]["result"]["accuracy"] >= 0.8


def test_cancel_during_progress_stops_the_job_and_frees_its_slots(jobs_client: TestClient) -> None:
    file_id = upload(jobs_client, batch_jsonl(40, max_tokens=48), "in.jsonl", purpose="batch")["id"]
    batch = jobs_client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                  "completion_window": "24h"}).json()
    job = wait_job(jobs_client, batch["id"], {"PROGRESS"}, settled=False, until=lambda job: job["current"] >= 2)
    cancelled = jobs_client.delete(f"/api/jobs/{batch['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    job = wait_job(jobs_client, batch["id"])
    assert job["state"] == "CANCELLED" and job["finished_at"]
    assert job["current"] < 40
    app = jobs_client.app
    assert not services_of(app).jobs.executor.running
    for model in services_of(app).manager.loaded():
        assert model.scheduler.idle, "a cancelled batch left requests in the scheduler"
    time.sleep(1.5)
    later = jobs_client.get(f"/api/jobs/{batch['id']}").json()
    assert later["current"] == job["current"] and later["state"] == "CANCELLED"
    # OpenAI's view: cancelled, with the lines it finished in a partial output file.
    seen = jobs_client.get(f"/v1/batches/{batch['id']}").json()
    assert seen["status"] == "cancelled" and seen["cancelled_at"]
    done = seen["request_counts"]["completed"]
    assert done >= 2 and seen["output_file_id"]
    lines = jobs_client.get(f"/v1/files/{seen['output_file_id']}/content").text.splitlines()
    assert len(lines) == done
    # Cancelling again changes nothing; a finished job cannot be cancelled into another state.
    assert jobs_client.delete(f"/api/jobs/{batch['id']}").json()["state"] == "CANCELLED"


def test_twenty_jobs_queued_at_once_all_finish(jobs_client: TestClient) -> None:
    file_id = upload(jobs_client, batch_jsonl(2, max_tokens=4), "tiny.jsonl", purpose="batch")["id"]
    ids = [jobs_client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                 "completion_window": "24h"}).json()["id"] for _ in range(20)]
    listed = {job["id"] for job in jobs_client.get("/api/jobs", params={"kind": "batch", "limit": 100}).json()["jobs"]}
    assert set(ids) <= listed
    states = [wait_job(jobs_client, job_id, timeout=300)["state"] for job_id in ids]
    assert states == ["SUCCESS"] * 20


def test_uploads_over_the_size_limit_are_refused_before_they_are_read(jobs_client: TestClient) -> None:
    big = b"text,label\n" + b"a,b\n" * (6 << 18)  # 6 MB against DESKML_MAX_UPLOAD_MB=5
    response = jobs_client.post("/api/files", files={"file": ("big.csv", big)}, data={"purpose": "train"})
    assert response.status_code == 413, response.text
    openai = jobs_client.post("/v1/files", files={"file": ("big.jsonl", big)}, data={"purpose": "batch"})
    assert openai.status_code == 413 and openai.json()["error"]["type"] == "invalid_request_error"
