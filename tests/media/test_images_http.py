"""Image generation with a tiny randomly initialised Stable Diffusion pipeline saved to disk and
loaded by the real diffusers engine, in every dialect; style transfer with the bundled ONNX model."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from tests.media.conftest import TINY_MODEL


def _png(data: str) -> Image.Image:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def test_openai_generation_size_and_seed(media_client: TestClient) -> None:
    request = {"model": TINY_MODEL, "prompt": "a red bicycle", "size": "96x64", "response_format": "b64_json",
               "seed": 7, "steps": 3}
    first = media_client.post("/v1/images/generations", json=request)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["created"] > 0 and len(body["data"]) == 1 and body["size"] == "96x64"
    image = _png(body["data"][0]["b64_json"])
    assert image.size == (96, 64)
    again = media_client.post("/v1/images/generations", json=request).json()
    assert again["data"][0]["b64_json"] == body["data"][0]["b64_json"]
    other = media_client.post("/v1/images/generations", json={**request, "seed": 8}).json()
    assert not np.array_equal(np.asarray(_png(other["data"][0]["b64_json"])), np.asarray(image))


def test_openai_generation_n_and_defaults(media_client: TestClient) -> None:
    response = media_client.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "a cat", "n": 2,
                                                                  "seed": 1})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2 and data[0]["b64_json"] != data[1]["b64_json"]
    assert _png(data[0]["b64_json"]).size == (64, 64)  # the model's native size: sample_size 32 x VAE factor 2


def test_openai_generation_bad_input(media_client: TestClient) -> None:
    odd = media_client.post("/v1/images/generations", json={"prompt": "a cat", "size": "100x64"})
    assert odd.status_code == 400 and "multiple of 8" in odd.json()["error"]["message"]
    shape = media_client.post("/v1/images/generations", json={"prompt": "a cat", "size": "big"})
    assert shape.status_code == 400
    unknown = media_client.post("/v1/images/generations", json={"prompt": "a cat", "model": "sd-nothing"})
    assert unknown.status_code == 404
    empty = media_client.post("/v1/images/generations", json={"prompt": ""})
    assert empty.status_code == 400


def test_ollama_generate_streams_progress_then_the_image(media_client: TestClient) -> None:
    lines = []
    with media_client.stream("POST", "/api/generate", json={"model": TINY_MODEL, "prompt": "a lighthouse",
                                                            "width": 64, "height": 48, "steps": 3,
                                                            "options": {"seed": 3}}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    progress, final = lines[:-1], lines[-1]
    assert [(p["completed"], p["total"]) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert all(p["done"] is False and p["model"] == f"{TINY_MODEL}:latest" for p in progress)
    assert final["done"] is True and final["done_reason"] == "stop"
    assert _png(final["image"]).size == (64, 48)
    single = media_client.post("/api/generate", json={"model": TINY_MODEL, "prompt": "a lighthouse", "width": 64,
                                                      "height": 48, "steps": 3, "stream": False,
                                                      "options": {"seed": 3}})
    assert single.json()["image"] == final["image"]


def test_seed_generate(media_client: TestClient) -> None:
    response = media_client.post("/api/images/generate", json={"prompt": "a boat", "width": 64, "height": 64,
                                                               "seed": 11, "steps": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["seeds"] == [11] and body["steps"] == 2
    assert body["model"] == f"{TINY_MODEL}:latest" and body["time"] > 0
    assert _png(body["images"][0]).size == (64, 64)
    bad = media_client.post("/api/images/generate", json={"prompt": "a boat", "width": 4000})
    assert bad.status_code == 400 and bad.json()["success"] is False


def _photo(width: int, height: int) -> bytes:
    gradient = np.linspace(0, 255, width * height * 3).reshape(height, width, 3).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(gradient).save(out, format="JPEG")
    return out.getvalue()


def test_stylize_keeps_the_input_size(media_client: TestClient) -> None:
    for size in ((300, 200), (1300, 90)):  # the second is larger than the network's 1024 px side
        response = media_client.post("/api/images/stylize", files={"image": ("photo.jpg", _photo(*size))},
                                     data={"style": "7"})
        assert response.status_code == 200, response.text
        body = response.json()
        image = _png(body["image"])
        assert image.size == size and (body["width"], body["height"]) == size
        original = np.asarray(Image.open(io.BytesIO(_photo(*size))).convert("RGB"), dtype=np.float32)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=np.float32) - original).mean() > 10  # it changed


def test_stylize_with_a_blend_and_a_style_image(media_client: TestClient) -> None:
    blend = media_client.post("/api/images/stylize", files={"image": ("a.jpg", _photo(128, 96))},
                              data={"style": "3:0.5,12:0.5", "strength": "0.8"})
    assert blend.status_code == 200 and _png(blend.json()["image"]).size == (128, 96)
    custom = media_client.post("/api/images/stylize", files={"image": ("a.jpg", _photo(128, 96)),
                                                             "style_image": ("s.jpg", _photo(64, 64))})
    assert custom.status_code == 200 and _png(custom.json()["image"]).size == (128, 96)


def test_stylize_bad_input(media_client: TestClient) -> None:
    not_image = media_client.post("/api/images/stylize", files={"image": ("a.png", b"GIF89a not really")})
    assert not_image.status_code == 400 and "not an image" in not_image.json()["error"]
    bad_style = media_client.post("/api/images/stylize", files={"image": ("a.jpg", _photo(64, 64))},
                                  data={"style": "40"})
    assert bad_style.status_code == 400 and "0 to 25" in bad_style.json()["error"]
    empty = media_client.post("/api/images/stylize", files={"image": ("a.jpg", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
