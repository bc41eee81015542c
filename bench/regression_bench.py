"""deskml against an earlier deskml: the same LLM bench (128-token streamed replies on the bundled
SmolLM2) for two source trees, side by side in one run, to show a change costs no speed.

Both servers run at once, each idle while the other is measured, in alternating rounds (A, B, A,
B, ...); each keeps its best round, since identical runs on a shared machine differ by up to 20 %.

    git worktree add /tmp/deskml-before <commit>
    .venv/bin/python bench/regression_bench.py --before /tmp/deskml-before --after . --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from deskml.bench.llm import Deskml, LevelResult, run_level


class DeskmlTree(Deskml):
    """`deskml serve` from one source tree (its package first on the path)."""

    def __init__(self, label: str, tree: Path, workdir: Path) -> None:
        super().__init__(Path(), "", workdir)
        self.name, self.tree = label, tree.resolve()

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        env["DESKML_DATA_DIR"] = str(self.workdir / f"{self.name}-data")
        return cmd, {**env, "PYTHONPATH": str(self.tree)}


def tokens_per_second(result: LevelResult) -> float:
    return sum(s.tokens for s in result.ok) / result.wall if result.wall else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="source tree of the earlier deskml")
    parser.add_argument("--after", type=Path, default=Path("."), help="source tree of the deskml to check")
    parser.add_argument("--streams", default="1,8", help="concurrent streams per level")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-client", type=int, default=2, help="requests per stream per round")
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.streams.split(",")]

    with tempfile.TemporaryDirectory(prefix="deskml-regression-") as tmp:
        systems = [DeskmlTree("before", args.before, Path(tmp)), DeskmlTree("after", args.after, Path(tmp))]
        best: dict[tuple[str, int], float] = {}
        errors: dict[str, int] = {s.name: 0 for s in systems}
        try:
            for system in systems:
                system.start()
                asyncio.run(run_level(system, 1, 1, 16))  # warm: first load, prompt cache
            for level in levels:
                for _ in range(args.rounds):
                    for system in systems:
                        result = asyncio.run(run_level(system, level, args.per_client, args.tokens))
                        errors[system.name] += len(result.samples) - len(result.ok)
                        key = (system.name, level)
                        best[key] = max(best.get(key, 0.0), tokens_per_second(result))
        finally:
            for system in systems:
                system.stop()

    print(f"{args.rounds} alternating rounds, best of each")
    print("| streams | before tok/s | after tok/s | after / before |")
    print("|---|---|---|---|")
    for level in levels:
        before, after = best[("before", level)], best[("after", level)]
        print(f"| {level} | {before:.1f} | {after:.1f} | ×{after / before:.2f} |")
    print(f"errors: {errors}")


if __name__ == "__main__":
    main()
