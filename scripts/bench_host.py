"""The engine's host cost per decoding step: N Persona-judge requests decoded together on the tests' tiny
model (2 layers, hidden 32: its forward is nearly free, as a GPU's is, so a step's time is the host's
work), one thread, end-of-sequence ignored; the sizes interleaved, the median of `--rounds` runs, and
each size's ms per step as a ratio to the first size's, measured in the same process.

    python scripts/bench_host.py --sizes 1 8 64 --rounds 7

Figures: docs/benchmarks.md, "2026-12-03: host work once per step".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pjudge_core import DecodeSettings, Request  # noqa: E402
from pjudge_core.bench.tiny import make_tiny_lm  # noqa: E402
from pjudge_core.engine.requests import Batch  # noqa: E402


def ms_per_step(lm, n: int, tokens: int) -> float:
    requests = [Request("persona-judge", "Describe a sunset over the sea.", ["Be concise.", "Be imaginative."],
                        DecodeSettings(seed=i, max_new_tokens=tokens), ignore_eos=True) for i in range(n)]
    batch = Batch(lm, requests, rows=n)
    started = time.perf_counter()
    batch.run()
    return 1000 * (time.perf_counter() - started) / batch.engine.steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lm = make_tiny_lm()
    ms_per_step(lm, 2, 8)  # warm-up
    runs: dict[int, list[float]] = {n: [] for n in args.sizes}
    for _ in range(args.rounds):
        for n in args.sizes:
            runs[n].append(ms_per_step(lm, n, args.tokens))
    base = statistics.median(runs[args.sizes[0]])
    report = {}
    for n in args.sizes:
        median = statistics.median(runs[n])
        report[n] = {"ms_per_step": round(median, 3), "best": round(min(runs[n]), 3), "ratio": round(median / base, 2)}
        print(f"{n:4d} requests: {median:.2f} ms/step (best {min(runs[n]):.2f}), {median / base:.2f}x "
              f"{args.sizes[0]} request{'s' if args.sizes[0] != 1 else ''}")
    return report


if __name__ == "__main__":
    main()
