"""Speech-to-text and text-to-speech over HTTP with the real bundled models (Whisper tiny.en and
base via faster-whisper, the Piper voice en_US-joe-medium), on speech that espeak-ng produces."""

from __future__ import annotations

import base64
import glob
import io
import os
import tempfile
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deskml.app import create_app
from tests.conftest import make_settings
from tests.media.conftest import espeak, make_wav, reencode, wav_samples, wer

SENTENCE = "We will meet at the coffee shop next to the train station on Monday."
SECOND = "The weather today is sunny and warm with a light wind from the west."


@pytest.fixture(scope="module")
def speech_wav() -> bytes:
    return espeak(f"{SENTENCE} {SECOND}")


def _transcribe(client: TestClient, data: bytes, name: str = "speech.wav", **fields: object) -> dict:
    response = client.post("/v1/audio/transcriptions", files={"file": (name, data)},
                           data={"model": "whisper-1", **fields})  # type: ignore[dict-item]
    assert response.status_code == 200, response.text
    return response.json()


def test_transcription_word_error_rate_and_ordered_timestamps(media_client: TestClient, speech_wav: bytes) -> None:
    body = _transcribe(media_client, speech_wav, response_format="verbose_json",
                       **{"timestamp_granularities[]": ["word", "segment"]})
    assert wer(f"{SENTENCE} {SECOND}", body["text"]) <= 0.2, body["text"]
    assert body["language"] == "english" and body["task"] == "transcribe"
    duration = len(wav_samples(speech_wav)[0]) / wav_samples(speech_wav)[1]
    assert body["duration"] == pytest.approx(duration, abs=0.05)
    segments, words = body["segments"], body["words"]
    assert segments and len(words) >= 20
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(w["start"] <= w["end"] for w in words)
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert words[-1]["end"] <= duration + 0.5


def test_response_formats(media_client: TestClient, speech_wav: bytes) -> None:
    text = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav)},
                             data={"response_format": "text"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert wer(f"{SENTENCE} {SECOND}", text.text) <= 0.2
    srt = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav)},
                            data={"response_format": "srt"})
    assert srt.text.startswith("1\n00:00:00,") and " --> " in srt.text
    vtt = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav)},
                            data={"response_format": "vtt"})
    assert vtt.text.startswith("WEBVTT\n\n00:00:")
    bad = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav)},
                            data={"response_format": "docx"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("name", "container", "codec", "rate"), [
    ("voice.m4a", "mp4", "aac", None),
    ("voice.ogg", "ogg", "libopus", 48000),
    ("voice.mp3", "mp3", "libmp3lame", None),
    ("voice.flac", "flac", "flac", None),
])
def test_formats_flutter_records_decode(media_client: TestClient, speech_wav: bytes, name: str, container: str,
                                        codec: str, rate: int | None) -> None:
    encoded = reencode(speech_wav, container, codec, rate)
    # The file name's extension is not what decides: the bytes are probed.
    body = _transcribe(media_client, encoded, name="recording.bin")
    assert wer(f"{SENTENCE} {SECOND}", body["text"]) <= 0.2, (name, body["text"])


def test_ten_minute_recording_is_chunked(media_client: TestClient) -> None:
    rate = 16000
    total = np.zeros(rate * 600, dtype=np.int16)
    phrases = {5.0: "The first meeting starts now.", 116.0: "This sentence crosses the first chunk boundary.",
               590.0: "That is the end of the recording."}
    for start, text in phrases.items():
        samples, source_rate = wav_samples(espeak(text))
        assert source_rate == 22050
        resampled = np.interp(np.arange(0, samples.size, source_rate / rate), np.arange(samples.size), samples)
        at = int(start * rate)
        total[at:at + resampled.size] = resampled.astype(np.int16)[: total.size - at]
    response = media_client.post("/api/audio/transcribe", files={"audio": ("long.wav", make_wav(total, rate))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["duration"] == pytest.approx(600.0, abs=0.1)
    chunks = body["chunks"]
    for start, text in phrases.items():
        near = [c for c in chunks if abs(c["timestamp"][0] - start) < 3.0]
        assert near, (start, chunks)
        assert wer(text, " ".join(c["text"] for c in near)) <= 0.35, (text, near)
    assert [c["timestamp"][0] for c in chunks] == sorted(c["timestamp"][0] for c in chunks)


def test_seed_transcribe_shape(media_client: TestClient, speech_wav: bytes) -> None:
    response = media_client.post("/api/audio/transcribe", files={"audio": ("speech.wav", speech_wav, "audio/wav")})
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"success", "text", "chunks", "model", "time"}
    assert body["model"] == "whisper:tiny.en" and body["time"] > 0
    assert all(len(c["timestamp"]) == 2 and c["timestamp"][0] <= c["timestamp"][1] for c in body["chunks"])
    assert wer(f"{SENTENCE} {SECOND}", body["text"]) <= 0.2


def test_bad_audio_uploads(media_client: TestClient) -> None:
    garbage = media_client.post("/api/audio/transcribe", files={"audio": ("a.wav", b"this is not audio at all" * 40)})
    assert garbage.status_code == 400
    assert garbage.json()["success"] is False and "not decodable audio" in garbage.json()["error"]
    empty = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    missing = media_client.post("/api/audio/transcribe", data={"language": "en"})
    assert missing.status_code == 400 and "audio" in missing.json()["error"]
    english_only = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", espeak("hello"))},
                                     data={"model": "whisper:tiny.en", "language": "ru"})
    assert english_only.status_code == 400 and "English-only" in english_only.json()["error"]["message"]
    unknown = media_client.post("/v1/audio/transcriptions", files={"file": ("a.wav", espeak("hello"))},
                                data={"model": "whisper:huge"})
    assert unknown.status_code == 404


def test_client_file_name_is_never_a_path(media_client: TestClient, speech_wav: bytes, tmp_path: Path) -> None:
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "*")))
    cwd = Path.cwd()
    response = media_client.post("/api/audio/transcribe", files={"audio": ("../../x", speech_wav)})
    assert response.status_code == 200
    after = set(glob.glob(os.path.join(tempfile.gettempdir(), "*")))
    assert not [p for p in after - before if "deskml-upload" in p]  # temp files, if any, are gone
    assert not (cwd.parent.parent / "x").exists() and not (Path(tempfile.gettempdir()).parent / "x").exists()


def test_upload_over_the_limit_is_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_upload_mb=0.5)
    with TestClient(create_app(settings)) as client:
        big = make_wav(np.zeros(16000 * 20, dtype=np.int16), 16000)  # 640 KB
        response = client.post("/api/audio/transcribe", files={"audio": ("big.wav", big)})
        assert response.status_code == 413 and response.json()["success"] is False
        openai = client.post("/v1/audio/transcriptions", files={"file": ("big.wav", big)})
        assert openai.status_code == 413 and "limit" in openai.json()["error"]["message"]


def test_translation_with_the_multilingual_model(media_client: TestClient, speech_wav: bytes) -> None:
    response = media_client.post("/v1/audio/translations", files={"file": ("a.wav", speech_wav)},
                                 data={"model": "whisper-1", "response_format": "verbose_json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "translate" and wer(f"{SENTENCE} {SECOND}", body["text"]) <= 0.3
    refused = media_client.post("/v1/audio/translations", files={"file": ("a.wav", speech_wav)},
                                data={"model": "whisper:tiny.en"})
    assert refused.status_code == 400 and "cannot translate" in refused.json()["error"]["message"]


def _decode(data: bytes) -> tuple[int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.rate, samples / stream.rate


@pytest.mark.parametrize(("fmt", "media_type"), [("wav", "audio/wav"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg"),
                                                 ("flac", "audio/flac"), ("aac", "audio/aac")])
def test_speech_formats(media_client: TestClient, fmt: str, media_type: str) -> None:
    response = media_client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Good morning, Alice.",
                                                           "voice": "alloy", "response_format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    rate, seconds = _decode(response.content)
    assert 0.6 < seconds < 4.0 and rate in {22050, 48000}


def test_speech_pcm_is_raw_24khz(media_client: TestClient) -> None:
    wav = media_client.post("/v1/audio/speech", json={"input": "Good morning, Alice.", "response_format": "wav"})
    pcm = media_client.post("/v1/audio/speech", json={"input": "Good morning, Alice.", "response_format": "pcm"})
    assert pcm.headers["content-type"] == "audio/pcm" and pcm.headers["x-sample-rate"] == "24000"
    assert len(pcm.content) % 2 == 0
    # The voice's 22.05 kHz output resampled to 24 kHz: same duration, more samples.
    assert len(pcm.content) / 2 / 24000 == pytest.approx(float(pcm.headers["x-audio-duration"]), abs=0.01)
    with wave.open(io.BytesIO(wav.content)) as handle:
        assert handle.getframerate() == 22050 and handle.getsampwidth() == 2 and handle.getnchannels() == 1


def test_speech_speed_changes_duration(media_client: TestClient) -> None:
    text = "Speaking faster makes the same sentence shorter."
    durations = {}
    for speed in (1.0, 2.0):
        response = media_client.post("/v1/audio/speech", json={"input": text, "speed": speed,
                                                               "response_format": "wav"})
        durations[speed] = float(response.headers["x-audio-duration"])
    assert durations[2.0] < durations[1.0] * 0.7


def test_speech_round_trip(media_client: TestClient) -> None:
    text = "The train to the airport leaves every twenty minutes from platform three."
    speech = media_client.post("/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": "echo",
                                                         "response_format": "mp3"})
    assert speech.status_code == 200
    for model in ("whisper-1", "whisper:base"):
        body = _transcribe(media_client, speech.content, name="speech.mp3", model=model)
        assert wer(text, body["text"]) <= 0.2, (model, body["text"])


def test_seed_speak_bytes_and_base64(media_client: TestClient) -> None:
    raw = media_client.post("/api/audio/speak", json={"text": "Hello from deskml."})
    assert raw.status_code == 200 and raw.headers["content-type"] == "audio/wav"
    assert raw.content[:4] == b"RIFF" and raw.headers["x-model"] == "piper:joe"
    encoded = media_client.post("/api/audio/speak", json={"text": "Hello from deskml.", "base64": True,
                                                          "format": "mp3"})
    body = encoded.json()
    assert body["success"] is True and body["format"] == "mp3" and body["duration"] > 0.5
    _rate, seconds = _decode(base64.b64decode(body["audio"]))
    assert seconds == pytest.approx(body["duration"], abs=0.15)


def test_speech_bad_input(media_client: TestClient) -> None:
    nothing = media_client.post("/v1/audio/speech", json={"input": "?!..."})
    assert nothing.status_code == 400 and "nothing to speak" in nothing.json()["error"]["message"]
    voice = media_client.post("/v1/audio/speech", json={"input": "hello", "voice": "darth"})
    assert voice.status_code == 400 and "joe" in voice.json()["error"]["message"]
    speed = media_client.post("/v1/audio/speech", json={"input": "hello", "speed": 9})
    assert speed.status_code == 400
    too_long = media_client.post("/v1/audio/speech", json={"input": "a" * 5000})
    assert too_long.status_code == 400
    seed = media_client.post("/api/audio/speak", json={"text": ""})
    assert seed.status_code == 400 and seed.json()["success"] is False
