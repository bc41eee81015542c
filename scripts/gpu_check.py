"""GPU vs CPU check of deskml's llama.cpp path and torch service placement (run by scripts/gpu_check.sh).

Prints the engine's devices, the layers offloaded, size_vram, tokens/s at 1 and N streams on GPU and CPU,
whether temperature-0 output is equal on both, and where torch service models run. Also runs on a machine
without a GPU (then the GPU rows say so), which is how it was tested.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deskml.engines import devices
from deskml.engines.contract import LoadConfig
from deskml.engines.devices import CPU_PLAN, GpuPlan
from deskml.engines.llama_cpp import LlamaCppModel
from deskml.runtime.gguf import read_gguf
from deskml.runtime.lifecycle import estimate_bytes

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


async def _one(engine: LlamaCppModel, tokens: int) -> tuple[str, int]:
    text, count = "", 0
    body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "ignore_eos": True, "seed": 1}
    async for chunk in engine.stream_raw("completion", body):
        for choice in chunk.get("choices") or []:
            text += choice.get("text") or ""
        count = int((chunk.get("timings") or {}).get("predicted_n", count))
    return text, count


def run(path: Path, plan: GpuPlan, streams: int, tokens: int, ctx: int) -> dict[str, Any]:
    engine = LlamaCppModel(LoadConfig(path=path, num_ctx=ctx, num_parallel=streams, gpu=plan))
    engine.load()
    try:
        async def all_streams() -> list[tuple[str, int]]:
            await _one(engine, 4)  # warm-up: first kernels, first allocations
            started = time.perf_counter()
            results = await asyncio.gather(*(_one(engine, tokens) for _ in range(streams)))
            return [*results, ("", int((time.perf_counter() - started) * 1e6))]

        *results, (_, micros) = asyncio.run(all_streams())
        produced = sum(n for _, n in results)
        info = read_gguf(path)
        size = estimate_bytes(info.metadata, path.stat().st_size, ctx * streams, "q8_0")
        return {
            "processor": devices.processor(engine.gpu.fraction), "layers": engine.gpu.n_gpu_layers,
            "total_layers": engine.gpu.total_layers, "size": size, "size_vram": int(size * engine.gpu.fraction),
            "streams": streams, "tokens": produced, "tokens_per_s": round(produced / (micros / 1e6), 1),
            "load_s": round(engine.load_seconds, 2), "text": results[0][0],
        }
    finally:
        engine.close()


def torch_services() -> dict[str, Any]:
    info = devices.torch_info(import_torch=True)
    if info is None:
        return {"torch": "not installed"}
    import torch

    device = devices.torch_device(torch, "embedding", "auto")
    report: dict[str, Any] = {"torch": info.version, "cuda": info.cuda, "cuda_version": info.cuda_version,
                              "devices": info.devices, "service_device": device}
    try:  # the embedding engine as the server runs it, when its weights package is installed
        from deskml.engines.sentence import MiniLMEmbedder

        spec = type("Spec", (), {"options": {}, "kind": "embedding", "name": "all-minilm", "install_command": ""})()
        embedder = MiniLMEmbedder(spec)
        embedder.load()
        vectors, _ = embedder.embed(["a GPU check", "another sentence"])
        report["all-minilm"] = {"device": embedder.device, "dimensions": len(vectors[0])}
    except Exception as exc:  # not installed here: say so, and still check a plain tensor op on the device
        report["all-minilm"] = f"not run: {exc}"
    a = torch.randn(512, 512, device=device)
    report["matmul_on"] = str((a @ a).device)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="a GGUF; default: generate one (scripts/make_tiny_gguf.py)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    path = args.model
    if path is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_tiny_gguf import build

        path = build(Path(tempfile.mkdtemp()) / "tiny.gguf", layers=args.layers)
    import xllamacpp

    found = devices.llama_devices()
    print("xllamacpp", getattr(xllamacpp, "__version__", "?"), "system:", xllamacpp.get_system_info().strip())
    print("llama.cpp devices:", [f"{d.name} {d.description} {d.memory_free / 2**30:.1f}/"
                                 f"{d.memory_total / 2**30:.1f} GiB free" for d in found] or "none (CPU-only build)")
    info = read_gguf(path)
    arch = info.metadata.get("general.architecture", "")
    size = estimate_bytes(info.metadata, path.stat().st_size, args.ctx * args.streams, "q8_0")
    plan = devices.plan(setting="auto", devices=found, block_count=int(info.metadata.get(f"{arch}.block_count", 0)),
                        model_bytes=path.stat().st_size, kv_bytes=size - path.stat().st_size)
    summary: dict[str, Any] = {"model": str(path), "model_bytes": path.stat().st_size,
                               "planned_layers": plan.n_gpu_layers}
    rows = []
    for label, chosen in (("gpu", plan), ("cpu", CPU_PLAN)):
        if label == "gpu" and plan.n_gpu_layers == 0:
            print("GPU: no layers can be offloaded (no GPU, or a CPU-only build); GPU rows skipped")
            continue
        for streams in (1, args.streams):
            row = {"run": label, **run(path, chosen, streams, args.tokens, args.ctx)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "text"}))
    texts = {r["run"]: r["text"] for r in rows if r["streams"] == 1}
    summary["temperature0_equal"] = texts.get("gpu") == texts.get("cpu") if "gpu" in texts else "no GPU run"
    summary["torch"] = torch_services()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
