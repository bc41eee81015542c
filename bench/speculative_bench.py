"""Speculative decoding on and off, side by side in one run (issue 18).

Each value of `--systems` is a `deskml serve` of this tree with DESKML_SPECULATIVE set to it (the
first is the baseline, normally `off`), the response cache off, models kept loaded, its own temporary
data dir and the bundled SmolLM2. Per round, each system in turn (A, B, A, B, ...) runs:

  editing     1 stream: rewrite a ~300-word text with one word changed (the reply repeats the prompt;
              SmolLM2-135M copies ~50 words verbatim, then paraphrases closely and stops by itself)
  extraction  1 stream: the names in a text as JSON, `format` = a JSON schema (grammar-constrained)
  quoting     1 stream: repeat a ~90-word passage exactly (what SmolLM2-135M does copy whole: the
              upper bound of what the editing task would gain with a model that edits faithfully)
  free text   1 stream: "write a long story", 160 tokens
  8 streams   the 128-token workload of deskml/bench/llm.py (8 clients, 2 requests each, end of
              sequence suppressed, temperature 0.7, seed 1): aggregate tokens/s

The 1-stream tasks run at temperature 0 with a fixed seed; editing and extraction use repeat_penalty
1.0 (the default 1.1 punishes the very repetition they need). Decode tokens/s is eval_count /
eval_duration of the final NDJSON line; wall time, draft_tokens and draft_accepted_tokens (deskml
extension fields, 0 when absent) are recorded too. Each system keeps its best round per task, since
identical runs on this shared 2-core machine differ by up to 20 %; every round is in the JSON.

All servers start first and stay up, each idle while another is measured (as regression_bench.py
does): only one generates at any moment, so they never compete for the 2 cores, and no round pays a
restart or a model load. keep_alive is -1 so an idle server never unloads its model between turns.
Each turn starts with a short unmeasured request so the model and threads are warm. Caveat: the same
prompts come back every round, so a draft mode that learns n-grams across requests may gain a little
in later rounds; round 1 of each system is in the JSON for comparison. Each turn also records the
CPU the idle servers and all other processes used meanwhile (/proc) and warns when it was not alone:
llama.cpp's threads spin at their barriers, so another busy process on 2 cores can slow a turn tenfold
(a dry run beside someone's test suite measured 1.8 tok/s instead of 56).

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/speculative_bench.py --systems off,auto --rounds 2

Writes bench/results/speculative_bench.json and prints a markdown table per non-baseline system:
task | <baseline> tok/s | <system> tok/s | ratio | drafted | accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from deskml.bench.llm import EOS_IDS, Deskml, Sample, _children, chat_lines, machine, run_level

MODEL = "smollm2"
SEED = 42

EDIT_TEXT = (
    "The old lighthouse on the northern cliff had not been lit for twenty years when Mara arrived in the "
    "village with a suitcase, a box of tools and a letter from the harbour council. The letter said that "
    "the lamp could be restored if someone patient enough was willing to try. Nobody in the village "
    "believed it. The fishermen said the salt had eaten the brass, the gulls had taken the roof, and the "
    "stairs were too rotten to climb. Mara listened politely and climbed them anyway, one careful step at "
    "a time, testing each board with her boot before trusting it with her weight.\n\n"
    "At the top she found the great lens still in its frame, grey with dust but whole. She spent the first "
    "week cleaning it with soft cloths and warm water, and the second week repairing the clockwork that "
    "once turned it. In the evenings she walked down to the harbour and asked the fishermen about the "
    "storms they remembered, the ships that had been lost, and the nights when the light had saved them. "
    "Slowly they began to bring her things: a coil of copper wire, a jar of oil, a brass gear that someone's "
    "grandfather had kept in a drawer for no reason anyone could remember.\n\n"
    "By the end of the month the clockwork turned again, slow and steady, and the lens caught the evening "
    "sun and threw it across the water in long golden bands. On the first dark night of autumn Mara lit "
    "the lamp. The whole village came out to watch from the harbour wall, and for a long time nobody said "
    "anything at all. Then the oldest fisherman took off his cap, and the others did the same, and the "
    "beam swept over their heads and out across the black sea, the way it had done when they were young."
)
# SmolLM2-135M copies about 50 words verbatim and then paraphrases closely; this framing (text last, then
# "Rewritten text:") let it end on its own, where others sent it into a loop of one sentence up to num_predict
EDIT_PROMPT = ("Rewrite the following text exactly, word for word, but change \"autumn\" to \"winter\".\n\nText:\n"
               + EDIT_TEXT + "\n\nRewritten text:")

EXTRACT_TEXT = (
    "Last spring Elena Rossi flew from Lisbon to Oslo to meet her cousin Tomasz Nowak, who had moved there "
    "from Krakow. They took the night train to Bergen with their friend Amira Haddad, an architect from "
    "Cairo, and spent a week hiking with a guide called Lars Eriksen. On the way back they stopped in "
    "Copenhagen, where Amira's sister Leila showed them around Nyhavn, and they ended the trip at a small "
    "restaurant in Hamburg run by a chef named Jonas Weber."
)
EXTRACT_PROMPT = ("Extract the names of all people and places from this text:\n\n" + EXTRACT_TEXT
                  + "\n\nReturn JSON: {\"names\": [\"Elena Rossi\", \"Lisbon\", ...]}")
# maxItems: without it the small model repeats names until num_predict
EXTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"names": {"type": "array", "items": {"type": "string"}, "maxItems": 12}},
    "required": ["names"],
}

QUOTE_TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "Sphinx of black quartz, judge my vow. "
              "Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump! The five boxing "
              "wizards jump quickly. Jackdaws love my big sphinx of quartz. Bright vixens jump; dozy fowl quack.")
QUOTE_PROMPT = "Repeat this text exactly:\n\n" + QUOTE_TEXT
STORY_PROMPT = "Write a long story about a clockmaker who builds a clock that runs backwards."


@dataclass
class Reply:
    """One streamed /api/chat reply: its final line's counters and the client's clock."""

    wall: float
    ttft: float
    eval_count: int
    eval_ns: int
    drafted: int
    accepted: int
    content: str

    @property
    def decode_tps(self) -> float:
        return self.eval_count / (self.eval_ns / 1e9) if self.eval_ns else 0.0


async def chat(client: httpx.AsyncClient, url: str, prompt: str, options: dict[str, Any],
               fmt: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True,
                            "options": options}
    if fmt is not None:
        body["format"] = fmt
    started = time.perf_counter()
    ttft, parts, final = 0.0, [], {}
    # the header is belt and braces beside DESKML_CACHE=false: a replayed reply would time nothing
    async for data in chat_lines(client, url, body, headers={"X-Deskml-Cache": "off"}):
        if data.get("done"):
            final = data
        elif data["message"].get("content"):
            parts.append(data["message"]["content"])
            ttft = ttft or time.perf_counter() - started
    return Reply(time.perf_counter() - started, ttft, int(final.get("eval_count") or 0),
                 int(final.get("eval_duration") or 0), int(final.get("draft_tokens") or 0),
                 int(final.get("draft_accepted_tokens") or 0), "".join(parts))


class SpecServer(Deskml):
    """`deskml serve` with one DESKML_SPECULATIVE value; counts drafted/accepted over the 8-stream runs."""

    def __init__(self, label: str, mode: str, workdir: Path) -> None:
        super().__init__(Path(), "", workdir)
        self.name, self.mode = label, mode
        self.drafted = self.accepted = 0

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        safe = self.name.replace(" ", "_").replace("#", "")
        return cmd, {**env, "DESKML_DATA_DIR": str(self.workdir / f"{safe}-data"),
                     "DESKML_SPECULATIVE": self.mode, "DESKML_KEEP_ALIVE": "-1"}

    async def stream(self, client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Sample:
        # the same request as Deskml.stream (llm.py's workload), read through chat() for the draft counters
        reply = await chat(client, self.url, prompt, {
            "num_predict": max_tokens, "temperature": 0.7, "seed": 1,
            "logit_bias": {str(i): -100 for i in EOS_IDS}})
        self.drafted += reply.drafted
        self.accepted += reply.accepted
        return Sample(reply.ttft, reply.wall, reply.eval_count)


@dataclass
class Row:
    system: str
    mode: str
    round: int
    task: str
    tps: float  # decode tokens/s (1 stream) or aggregate tokens/s (8 streams)
    wall: float
    tokens: int
    drafted: int
    accepted: int
    errors: int = 0
    note: str = ""
    content: str = ""  # 1-stream replies: compared with the baseline's (temperature 0 must not change them)


@dataclass
class Turn:
    """One system's turn in a round, with what else the machine did meanwhile."""

    round: int
    system: str
    wall: float
    idle_cpu_s: dict[str, float]  # CPU seconds the idle servers used during the turn (should be ~0)
    other_cores: float  # cores the rest of the machine kept busy on average (another job shows here)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, from /proc."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def server_cpu(server: SpecServer) -> float:
    return cpu_seconds(server.proc.pid) if server.proc else 0.0


async def single_tasks(server: SpecServer, rnd: int, edit_tokens: int, story_tokens: int) -> list[Row]:
    greedy = {"temperature": 0, "seed": SEED}
    tasks: list[tuple[str, str, dict[str, Any], dict[str, Any] | None]] = [
        ("editing", EDIT_PROMPT, {**greedy, "repeat_penalty": 1.0, "num_predict": edit_tokens}, None),
        ("extraction", EXTRACT_PROMPT, {**greedy, "repeat_penalty": 1.0, "num_predict": 200}, EXTRACT_SCHEMA),
        ("quoting", QUOTE_PROMPT, {**greedy, "repeat_penalty": 1.0, "num_predict": 140}, None),
        ("free text", STORY_PROMPT, {**greedy, "num_predict": story_tokens}, None),
    ]
    rows = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        for task, prompt, options, fmt in tasks:
            reply = await chat(client, server.url, prompt, options, fmt)
            note = ""
            if task == "editing":
                note = (f"reply {len(reply.content.split())} words, first {verbatim_words(reply.content)} verbatim, "
                        f"of {len(EDIT_TEXT.split())}")
            elif task == "extraction":
                try:
                    note = f"{len(json.loads(reply.content)['names'])} names"
                except (ValueError, KeyError, TypeError):
                    note = "invalid JSON"
            rows.append(Row(server.name, server.mode, rnd, task, reply.decode_tps, reply.wall, reply.eval_count,
                            reply.drafted, reply.accepted, note=note, content=reply.content))
    return rows


def verbatim_words(reply: str) -> int:
    """How many words the reply copies from the start of EDIT_TEXT before it first differs."""
    count = 0
    for got, want in zip(reply.split(), EDIT_TEXT.split(), strict=False):
        if got != want:
            break
        count += 1
    return count


async def warm(server: SpecServer) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        await chat(client, server.url, "Say hello.", {"num_predict": 8, "temperature": 0})


def best(rows: list[Row]) -> dict[tuple[str, str], Row]:
    out: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row.system, row.task)
        if key not in out or row.tps > out[key].tps:
            out[key] = row
    return out


def tables(rows: list[Row], systems: list[SpecServer], tasks: list[str]) -> str:
    top = best(rows)
    base = systems[0].name
    out = []
    for other in systems[1:]:
        lines = [f"| task | {base} tok/s | {other.name} tok/s | ratio (best) | ratio (median) | rounds won "
                 "| drafted | accepted |", "|---|---|---|---|---|---|---|---|"]
        for task in tasks:
            a, b = top.get((base, task)), top.get((other.name, task))
            if not a or not b:
                continue
            ratio = f"×{b.tps / a.tps:.2f}" if a.tps else "n/a"
            mine, theirs = _round_tps(rows, other.name, task), _round_tps(rows, base, task)
            median = f"×{statistics.median(mine) / statistics.median(theirs):.2f}" if theirs and mine else "n/a"
            won = sum(m > t for m, t in zip(mine, theirs, strict=False))
            accepted = f"{b.accepted} ({b.accepted / b.drafted:.0%})" if b.drafted else str(b.accepted)
            lines.append(f"| {task} | {a.tps:.1f} | {b.tps:.1f} | {ratio} | {median} | {won} of {len(mine)} "
                         f"| {b.drafted} | {accepted} |")
        same = [f"{t}: {'yes' if _replies(rows, base, t) == _replies(rows, other.name, t) else 'NO'}"
                for t in tasks if _replies(rows, base, t)]
        lines.append(f"\nSame replies as {base} at temperature 0 (every round): " + ", ".join(same))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _round_tps(rows: list[Row], system: str, task: str) -> list[float]:
    """The system's tokens/s on the task, round by round (rounds alternate, so round i pairs with round i)."""
    return [r.tps for r in sorted(rows, key=lambda r: r.round) if r.system == system and r.task == task]


def _replies(rows: list[Row], system: str, task: str) -> set[str]:
    return {r.content for r in rows if r.system == system and r.task == task and r.content}


def labels(modes: list[str]) -> list[str]:
    """Unique names for the systems: a repeated mode (the `off,off` dry run) gets #2, #3..."""
    seen: dict[str, int] = {}
    out = []
    for mode in modes:
        seen[mode] = seen.get(mode, 0) + 1
        out.append(mode if seen[mode] == 1 else f"{mode}#{seen[mode]}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="off,auto", help="DESKML_SPECULATIVE values; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--edit-tokens", type=int, default=420, help="num_predict of the editing task")
    parser.add_argument("--story-tokens", type=int, default=160, help="num_predict of the free-text task")
    parser.add_argument("--streams", type=int, default=8, help="concurrent clients of the batch workload (0: skip)")
    parser.add_argument("--per-client", type=int, default=2, help="requests per client of the batch workload")
    parser.add_argument("--batch-tokens", type=int, default=128, help="reply length of the batch workload")
    parser.add_argument("--out", type=Path, default=Path("bench/results/speculative_bench.json"))
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.systems.split(",") if m.strip()]
    if len(modes) < 2:
        parser.error("--systems needs at least two values (the first is the baseline)")
    batch_task = f"{args.streams} streams (aggregate)"
    tasks = ["editing", "extraction", "quoting", "free text", *([batch_task] if args.streams else [])]

    began = time.perf_counter()
    rows: list[Row] = []
    turns: list[Turn] = []
    with tempfile.TemporaryDirectory(prefix="deskml-spec-") as tmp:
        systems = [SpecServer(label, mode, Path(tmp)) for label, mode in zip(labels(modes), modes, strict=True)]
        try:
            for server in systems:
                print(f"starting {server.name} (DESKML_SPECULATIVE={server.mode}) ...", file=sys.stderr, flush=True)
                server.start()
            for rnd in range(1, args.rounds + 1):
                for server in systems:
                    before = {s.name: server_cpu(s) for s in systems}
                    busy, own, turn_began = machine_cpu(), time.process_time(), time.perf_counter()
                    asyncio.run(warm(server))
                    found = asyncio.run(single_tasks(server, rnd, args.edit_tokens, args.story_tokens))
                    if args.streams:
                        server.drafted = server.accepted = 0
                        res = asyncio.run(run_level(server, args.streams, args.per_client, args.batch_tokens))
                        ok = res.ok
                        tokens = sum(s.tokens for s in ok)
                        short = sum(1 for s in ok if s.tokens < args.batch_tokens)
                        found.append(Row(server.name, server.mode, rnd, batch_task,
                                         tokens / res.wall if res.wall else 0.0, res.wall, tokens, server.drafted,
                                         server.accepted, len(res.samples) - len(ok), f"{short} short replies"))
                    for row in found:
                        print(f"round {rnd} {row.system:>8} {row.task:<24} {row.tps:7.1f} tok/s  wall {row.wall:6.2f}s"
                              f"  drafted {row.drafted:5d} accepted {row.accepted:5d}  {row.note}",
                              file=sys.stderr, flush=True)
                    rows.extend(found)
                    wall = time.perf_counter() - turn_began
                    used = {s.name: server_cpu(s) - before[s.name] for s in systems}
                    others = machine_cpu() - busy - sum(used.values()) - (time.process_time() - own)
                    del used[server.name]
                    turn = Turn(rnd, server.name, wall, {k: round(v, 2) for k, v in used.items()},
                                round(others / wall, 3))
                    turns.append(turn)
                    # llama.cpp's threads spin at their barriers: another busy process on 2 cores can slow a
                    # turn tenfold, so such a turn is flagged rather than quietly averaged in
                    if turn.other_cores > 0.2 or any(v > 0.05 * wall for v in used.values()):
                        print(f"WARNING: round {rnd} {server.name} did not have the machine to itself (other "
                              f"processes {turn.other_cores:.2f} cores, idle servers {turn.idle_cpu_s} CPU s): "
                              "its figures are suspect", file=sys.stderr, flush=True)
        finally:
            for server in systems:
                server.stop()
    runtime = time.perf_counter() - began

    report = "\n\n".join([
        f"Machine: {machine()}",
        f"Model: {MODEL} (bundled), DESKML_SPECULATIVE = {', '.join(modes)}; {args.rounds} alternating rounds, "
        f"best of each; 1-stream tasks at temperature 0 (decode tok/s = eval_count / eval_duration), "
        f"{args.streams} streams x {args.per_client} requests of {args.batch_tokens} tokens (aggregate tok/s)",
        tables(rows, systems, tasks),
        "Other processes during each turn (cores, average): "
        + ", ".join(f"r{t.round} {t.system} {t.other_cores:.2f}" for t in turns),
        f"Runtime {runtime:.0f} s",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine(), "model": MODEL, "systems": dict(zip(labels(modes), modes, strict=True)),
        "rounds": args.rounds, "runtime_s": runtime, "argv": sys.argv[1:],
        "rows": [asdict(r) for r in rows], "turns": [asdict(t) for t in turns],
    }, indent=1) + "\n", "utf-8")
    print(report)


if __name__ == "__main__":
    main()
