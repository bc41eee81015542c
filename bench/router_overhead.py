"""Routing overhead: the same streaming chat request sent straight to an upstream and through a deskml
node that routes to it, side by side in one run, reported as a ratio.

The upstream is a minimal OpenAI-compatible SSE server (its own process, no model) so that what is
measured is the router's own cost (dialect translation, the extra hop, health and breaker bookkeeping,
request record, history), not the model's speed. The deskml node runs with default settings.

    python bench/router_overhead.py [--requests 200] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

WORDS = ["Hello", " from", " the", " upstream", "!"] * 4  # 20 content chunks


def fake_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def models(_request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": "fast", "object": "model"}]})

    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()

        async def lines() -> object:
            for word in WORDS:
                chunk = {"id": "c", "object": "chat.completion.chunk", "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            end = {"id": "c", "object": "chat.completion.chunk", "model": body["model"],
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 5, "completion_tokens": len(WORDS)}}
            yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def one(client: httpx.AsyncClient, url: str, model: str) -> tuple[float, float]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    first = 0.0
    text = []
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0]["delta"].get("content"):
                    first = first or time.perf_counter() - started
                    text.append(choices[0]["delta"]["content"])
    assert "".join(text) == "".join(WORDS), "".join(text)
    return time.perf_counter() - started, first


async def run(direct: str, routed: str, requests: int, concurrency: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "routed": []}
    walls = {"direct": 0.0, "routed": 0.0}
    targets = {"direct": (direct, "fast"), "routed": (routed, "up/fast")}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
        for url, model in targets.values():  # warm-up
            await asyncio.gather(*(one(client, url, model) for _ in range(concurrency * 2)))
        rounds = 10
        for round_ in range(rounds):  # interleave the two, alternating which goes first
            order = ["direct", "routed"] if round_ % 2 == 0 else ["routed", "direct"]
            for name in order:
                url, model = targets[name]
                batch = requests // rounds
                gate = asyncio.Semaphore(concurrency)

                async def limited(
                    url: str = url, model: str = model, gate: asyncio.Semaphore = gate
                ) -> tuple[float, float]:
                    async with gate:
                        return await one(client, url, model)

                started = time.perf_counter()
                results[name] += await asyncio.gather(*(limited() for _ in range(batch)))
                walls[name] += time.perf_counter() - started
    summary = {}
    for name, items in results.items():
        totals = sorted(t for t, _ in items)
        summary[name] = {
            "p50_ms": statistics.median(totals) * 1000, "p95_ms": totals[int(len(totals) * 0.95) - 1] * 1000,
            "ttft_p50_ms": statistics.median(f for _, f in items) * 1000, "req_per_s": len(items) / walls[name],
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        import uvicorn

        uvicorn.run(fake_app(), host="127.0.0.1", port=args.serve_fake, log_level="warning")  # type: ignore[arg-type]
        return
    fake_port, node_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "upstreams.toml"
        routes.write_text(f'[[upstreams]]\nname = "up"\nkind = "openai"\nurl = "http://127.0.0.1:{fake_port}/v1"\n'
                          'prefix = "up/"\n')
        fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(fake_port)])
        env = {**os.environ, "DESKML_DATA_DIR": tmp, "DESKML_PORT": str(node_port),
               "DESKML_UPSTREAMS_FILE": str(routes), "DESKML_LOG_LEVEL": "warning"}
        node = subprocess.Popen([sys.executable, "-m", "deskml.cli.main", "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_up(f"http://127.0.0.1:{fake_port}/v1/models", fake)
            wait_up(f"http://127.0.0.1:{node_port}/api/version", node)
            direct = f"http://127.0.0.1:{fake_port}/v1/chat/completions"
            routed = f"http://127.0.0.1:{node_port}/v1/chat/completions"
            print(f"{args.requests} streaming chat requests per side, {len(WORDS)} chunks each; "
                  "direct = straight to the upstream, routed = through deskml (OpenAI dialect in and out)")
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                summary = asyncio.run(run(direct, routed, args.requests, concurrency))
                d, r = summary["direct"], summary["routed"]
                print(f"\nconcurrency {concurrency}")
                print(f"  {'':8} {'p50 ms':>8} {'p95 ms':>8} {'TTFT p50':>9} {'req/s':>8}")
                for name, row in summary.items():
                    print(f"  {name:8} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} {row['ttft_p50_ms']:9.2f} "
                          f"{row['req_per_s']:8.1f}")
                print(f"  routed/direct: latency p50 x{r['p50_ms'] / d['p50_ms']:.2f} "
                      f"(+{r['p50_ms'] - d['p50_ms']:.2f} ms), throughput x{r['req_per_s'] / d['req_per_s']:.2f}")
        finally:
            for proc in (node, fake):
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
