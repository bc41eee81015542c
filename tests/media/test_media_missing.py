"""What a client sees when a speech or image service cannot run: 501 naming the exact fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from deskml.core.extras import install_command
from tests.conftest import make_settings, services_of
from tests.media.conftest import espeak


def test_no_image_model_is_501_saying_where_to_put_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        response = client.post("/v1/images/generations", json={"prompt": "a cat"})
        assert response.status_code == 501
        message = response.json()["error"]["message"]
        assert "diffusers pipeline" in message and str(tmp_path / "image-models") in message
        assert install_command("image") not in message  # the engine is installed here: only a model is missing
        seed = client.post("/api/images/generate", json={"prompt": "a cat"})
        assert seed.status_code == 501 and seed.json()["success"] is False
        monkeypatch.setitem(sys.modules, "diffusers", None)  # as without the [image] extra
        message = client.post("/v1/images/generations", json={"prompt": "a cat"}).json()["error"]["message"]
        assert "diffusers pipeline" in message and install_command("image") in message


def test_missing_extra_is_501_with_the_pip_command(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        # As on a machine without the [audio] extra: a module the engines need is not importable.
        for spec in services_of(client.app).service_manager.specs:
            if spec.kind in {"asr", "tts"}:
                spec.requires = [*spec.requires, "deskml_module_that_is_not_installed"]
        response = client.post("/api/audio/transcribe", files={"audio": ("a.wav", espeak("hello"))})
        assert response.status_code == 501
        assert install_command("audio") in response.json()["error"]
        speech = client.post("/v1/audio/speech", json={"input": "hello", "model": "piper:joe"})
        assert speech.status_code == 501
        assert install_command("audio") in speech.json()["error"]["message"]
