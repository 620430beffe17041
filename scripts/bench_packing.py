"""Linear layers packed for oneDNN against transformers' own, on the bundled model in float32 on the CPU:
one Persona-judge request alone and N requests together (end-of-sequence ignored), the two models
interleaved in one process, medians of `--rounds`; tokens/s, the ratios packed / plain, and how many of
the N requests decode the same tokens with both (a parting is a near-tie rounded the other way).

    python scripts/bench_packing.py --requests 32 --tokens 128 --rounds 2

Figures: docs/benchmarks.md, "Linear layers packed for oneDNN".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pjudge_core import DecodeSettings, Request, load_model  # noqa: E402
from pjudge_core.engine.requests import Batch  # noqa: E402

QUERY, PREFS = "Describe a sunset over the sea.", ["Be concise.", "Be imaginative."]


def tokens_per_s(lm, count: int, tokens: int) -> tuple[float, list[list[int]]]:
    requests = [Request("persona-judge", QUERY, PREFS, DecodeSettings(seed=i, max_new_tokens=tokens), ignore_eos=True)
                for i in range(count)]
    batch = Batch(lm, requests, rows=count)
    started = time.perf_counter()
    results = batch.run()
    return count * tokens / (time.perf_counter() - started), [r.token_ids for r in results]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    models = {"plain": load_model(args.model, pack=False), "packed": load_model(args.model)}
    for lm in models.values():
        tokens_per_s(lm, 2, 8)  # warm-up
    runs = {(name, n): [] for name in models for n in (1, args.requests)}
    tokens = {}
    for _ in range(args.rounds):
        for n in (1, args.requests):
            for name, lm in models.items():
                rate, tokens[name, n] = tokens_per_s(lm, n, args.tokens)
                runs[name, n].append(rate)
    report = {}
    for n in (1, args.requests):
        plain, packed = (statistics.median(runs[name, n]) for name in ("plain", "packed"))
        same = sum(a == b for a, b in zip(tokens["plain", n], tokens["packed", n]))
        report[n] = {"plain_tokens_per_s": round(plain, 1), "packed_tokens_per_s": round(packed, 1),
                     "ratio": round(packed / plain, 3), "same_tokens": same}
        print(f"{n:3d} request{'s' if n > 1 else ' '} together: plain {plain:6.1f} tokens/s, packed {packed:6.1f} "
              f"({packed / plain:.2f}x); runs {[round(r, 1) for r in runs['plain', n]]} / "
              f"{[round(r, 1) for r in runs['packed', n]]}; same tokens in {same} of {n}")
    return report


if __name__ == "__main__":
    main()
