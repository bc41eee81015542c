"""Embedding and vision service benchmark: dynamic batching against one-at-a-time, side by side.

Two in-process deskml apps on the same bundled models, driven through their HTTP routes (ASGI, so
multipart parsing, decoding, batching and the forward pass are all counted, the network is not):

  batched      DESKML_BATCH_MAX_SIZE=8, DESKML_BATCH_WAIT_MS=5 (the defaults)
  sequential   DESKML_BATCH_MAX_SIZE=1: every request gets its own forward pass, one at a time

Measures, alternating the two apps round by round:
  * classify (EfficientNet-Lite0, seed route /api/vision/classify): images/s with 1 and 8
    concurrent clients, each request one JPEG (scikit-image's chelsea, 451x300);
  * embeddings (all-minilm, /api/embed): sentences/s with 1 and 8 concurrent clients sending one
    sentence each, and one request of 64 sentences;
  * the classifier's engine alone: onnxruntime against eager PyTorch, batch 1 and 8;
  * first request (load) against warm latency for every bundled model.

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/services_bench.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deskml.api.deps import services_ref
from deskml.app import create_app
from deskml.settings import Settings

SENTENCES = [f"Sentence number {i} says something about cats, rain, markets or code." for i in range(256)]


def jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def text_png() -> bytes:
    image = Image.new("RGB", (520, 90), "white")
    ImageDraw.Draw(image).text((20, 20), "Invoice total: 42.50", fill="black", font=ImageFont.load_default(size=40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class App:
    def __init__(self, name: str, data_dir: Path, batch: int) -> None:
        self.name = name
        settings = Settings(_env_file=None, data_dir=data_dir, batch_max_size=batch, auth="off",  # type: ignore[call-arg]
                            log_level="warning")
        self.app = create_app(settings)
        self._lifespan: Any = None
        self.client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> App:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://bench",
                                        timeout=120)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.client is not None
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    async def classify(self, image: bytes) -> None:
        assert self.client is not None
        r = await self.client.post("/api/vision/classify", files={"image": ("a.jpg", image, "image/jpeg")})
        r.raise_for_status()

    async def embed(self, texts: list[str], model: str = "all-minilm") -> None:
        assert self.client is not None
        r = await self.client.post("/api/embed", json={"model": model, "input": texts})
        r.raise_for_status()


async def throughput(call: Callable[[], Awaitable[None]], clients: int, seconds: float) -> tuple[float, float]:
    """Requests per second and median latency (ms) with `clients` closed-loop clients."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - started), statistics.median(latencies) * 1000


async def side_by_side(
    apps: list[App], label: str, make_call: Callable[[App], Callable[[], Awaitable[None]]], clients: int,
    seconds: float, rounds: int, per_request: int = 1,
) -> dict[str, tuple[float, float]]:
    rates: dict[str, list[float]] = {a.name: [] for a in apps}
    medians: dict[str, list[float]] = {a.name: [] for a in apps}
    for _ in range(rounds):  # alternate, so drift (thermal, other load) hits both alike
        for app in apps:
            rate, median = await throughput(make_call(app), clients, seconds / rounds)
            rates[app.name].append(rate * per_request)
            medians[app.name].append(median)
    result = {name: (statistics.mean(rates[name]), statistics.median(medians[name])) for name in rates}
    base = result["sequential"][0]
    for name, (rate, median) in result.items():
        print(f"| {label} | {clients} | {name} | {rate:.1f} | {median:.1f} | {rate / base:.2f}x |")
    return result


def engine_alone() -> None:
    import onnxruntime as ort
    import torch

    from deskml.engines.vision import build_efficientnet_lite0, cpu_threads, export_onnx, with_features

    model = build_efficientnet_lite0()
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_threads()
    session = ort.InferenceSession(export_onnx(with_features(model)), options, providers=["CPUExecutionProvider"])

    def rate(fn: Callable[[np.ndarray], Any], batch: int, seconds: float = 3.0) -> float:
        x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
        fn(x)
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            fn(x)
            n += batch
        return n / (time.perf_counter() - started)

    def eager(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    print("\n| engine (EfficientNet-Lite0 forward only) | batch | images/s |")
    print("|---|---|---|")
    for batch in (1, 8):
        print(f"| onnxruntime | {batch} | {rate(lambda x: session.run(None, {'input': x}), batch):.1f} |")
        print(f"| PyTorch eager | {batch} | {rate(eager, batch):.1f} |")


async def load_vs_warm(data_dir: Path) -> None:
    from skimage import data as skdata

    chelsea = jpeg(skdata.chelsea())
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("all-minilm", "/api/embed", {"json": {"model": "all-minilm", "input": ["hello world"]}}),
        ("wordllama", "/api/embed", {"json": {"model": "wordllama", "input": ["hello world"]}}),
        ("efficientnet-lite0", "/api/vision/classify", {"files": {"image": ("a.jpg", chelsea, "image/jpeg")}}),
        ("pp-ocrv4", "/api/vision/ocr", {"files": {"image": ("a.png", text_png(), "image/png")}}),
        ("yolov3-tiny", "/api/vision/detect", {"files": {"image": ("a.jpg", chelsea, "image/jpeg")}}),
    ]
    print("\n| model | first request (load), ms | warm, median of 10, ms |")
    print("|---|---|---|")
    async with App("fresh", data_dir, 8) as app:
        assert app.client is not None
        for name, path, kwargs in calls:
            started = time.perf_counter()
            (await app.client.post(path, **kwargs)).raise_for_status()
            first = (time.perf_counter() - started) * 1000
            warm = []
            for _ in range(10):
                started = time.perf_counter()
                (await app.client.post(path, **kwargs)).raise_for_status()
                warm.append((time.perf_counter() - started) * 1000)
            print(f"| {name} | {first:.0f} | {statistics.median(warm):.1f} |")


async def main(seconds: float, rounds: int) -> None:
    from skimage import data as skdata

    logging.disable(logging.INFO)  # access lines for thousands of requests would drown the tables

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    image = jpeg(skdata.chelsea())
    with tempfile.TemporaryDirectory() as tmp:
        await load_vs_warm(Path(tmp) / "fresh")
        async with App("batched", Path(tmp) / "b", 8) as batched, App("sequential", Path(tmp) / "s", 1) as seq:
            apps = [batched, seq]
            for app in apps:  # load every model before timing
                await app.classify(image)
                await app.embed(["warm up"])
            print("\n| workload | concurrent clients | server | items/s | median latency, ms | vs sequential |")
            print("|---|---|---|---|---|---|")
            for clients in (1, 8):
                await side_by_side(apps, "classify (images/s)", lambda a: lambda: a.classify(image), clients,
                                   seconds, rounds)
            for clients in (1, 8):
                await side_by_side(apps, "embed 1 sentence/request (sentences/s)",
                                   lambda a: lambda: a.embed([SENTENCES[0]]), clients, seconds, rounds)
            await side_by_side(apps, "embed 64 sentences/request (sentences/s)",
                               lambda a: lambda: a.embed(SENTENCES[:64]), 1, seconds, rounds, per_request=64)
            for app in apps:
                stats = services_ref(app.app).get().service_tasks._batchers["efficientnet-lite0"][1].stats
                print(f"\n{app.name}: classify batches {stats.batches}, mean size {stats.mean_size:.2f}, "
                      f"largest {stats.largest}")
    engine_alone()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per workload and server")
    parser.add_argument("--rounds", type=int, default=4, help="alternations per workload")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
