"""Fixtures for embedding, rerank and vision tests: an app serving the real bundled models, real
photos from scikit-image, and images with text rendered by Pillow."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from deskml.app import create_app
from tests.conftest import make_settings


def encode(pixels: np.ndarray | Image.Image, fmt: str = "JPEG") -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    out = io.BytesIO()
    image.convert("RGB").save(out, format=fmt)
    return out.getvalue()


def photo(name: str) -> np.ndarray:
    """A real photo shipped with scikit-image (chelsea: a cat, coffee: a cup, motorcycle_left)."""
    from skimage import data
    from skimage import io as skio

    if name == "motorcycle":
        return skio.imread(Path(data.__file__).parent / "motorcycle_left.png")[:, :, :3]
    return getattr(data, name)()


def text_image(lines: list[str], size: int = 40) -> bytes:
    """A PNG of black text on white, one line per entry, in Pillow's bundled font."""
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textbbox((0, 0), line, font=font)[2]) for line in lines)
    step = int(size * 1.8)
    image = Image.new("RGB", (width + 60, 40 + step * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30, 20 + step * i), line, fill="black", font=font)
    return encode(image, "PNG")


@pytest.fixture(scope="module")
def detectors_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("detectors")


@pytest.fixture(scope="module")
def svc_client(tmp_path_factory: pytest.TempPathFactory, detectors_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("data"), detect_models_dir=detectors_dir, max_upload_mb=2)
    with TestClient(create_app(settings)) as client:
        yield client
