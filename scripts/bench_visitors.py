"""Visitors at once: how long do they wait when several press Run together? (CPU-heavy; not part of CI.)

Starts `python app.py` (the bundled model, as `make run` does) on a free port and sends the run a
first visitor sees (the default pair, query and methods, persona fit and meters included) with
`--tokens` new tokens:

1. each of the seeds alone, one after another: the baseline, and each seed's lone tokens;
2. for each N in `--together`, N visitors (their own sessions, seeds 0..N-1) pressing Run at once.

For every run it notes when the first Persona-judge token reached the visitor (the first update
whose Persona-judge panel holds a token) and when the run finished, and prints, per N, each
visitor's first-token and finish times, the slowest finish over the median lone finish, and
whether each visitor's panels hold exactly the tokens of the same seed's lone run.

    python scripts/bench_visitors.py                     # 64 tokens; 1 vs 4 and 8 visitors
    python scripts/bench_visitors.py --tokens 32 --together 2,4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appserver import ROOT, served_app

TOKEN = 'class="tok '  # a decided token in a panel's HTML
OK = "pj-msg-ok"  # the message a finished run shows


@dataclass
class Visit:
    """One visitor's run as they saw it."""

    seed: int
    first_token_s: float | None = None
    finish_s: float | None = None
    ok: bool = False
    panels: dict = field(default_factory=dict)  # slot -> token ids, from the run's record


def visit(client, seed: int, tokens: int, pj_index: int, go: threading.Event) -> Visit:
    """Press Run (after `go`) and follow the updates as the browser would receive them."""
    result = Visit(seed)
    go.wait()
    started = time.perf_counter()
    job = client.submit(max_new_tokens=tokens, seed=seed, api_name="/run")
    seen = 0
    while True:
        done = job.done()
        outputs = job.outputs()
        for out in outputs[seen:]:
            if result.first_token_s is None and TOKEN in str(out[pj_index]):
                result.first_token_s = time.perf_counter() - started
        seen = len(outputs)
        if done:
            break
        time.sleep(0.05)  # the first token is timed to 50 ms; faster polling would load the 2 cores it measures
    result.finish_s = time.perf_counter() - started
    last = outputs[-1] if outputs else ()
    result.ok = any(OK in str(o) for o in last)
    for value in last:  # the download button's update carries the record's path
        path = value.get("value") if isinstance(value, dict) else None
        if isinstance(path, str) and path.endswith(".json") and os.path.exists(path):
            record = json.loads(Path(path).read_text(encoding="utf-8"))
            result.panels = {p["slot"]: p["token_ids"] for p in record["panels"]}
    return result


def together(url: str, seeds: list[int], tokens: int, pj_index: int) -> list[Visit]:
    """Visitors with these seeds press Run at the same moment, each in their own session."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in seeds]  # connected before the clock starts
    go = threading.Event()
    visits: list[Visit | None] = [None] * len(seeds)

    def one(i: int) -> None:
        visits[i] = visit(clients[i], seeds[i], tokens, pj_index, go)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    return visits


def fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:5.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--together", default="4,8", help="visitor counts pressing Run at once (comma-separated)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the app (OMP_NUM_THREADS; default: torch's own)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.together.split(",") if n.strip()]

    sys.path.insert(0, str(ROOT))
    from pjudge_core.ui import lab  # the run's outputs start with one panel per slot

    pj_index = lab.slots().index("persona-judge")
    with served_app(args.threads, prefix="pjudge-visitors-") as app:
        url = app.url
        together(url, [999], 8, pj_index)  # loads the model and warms it up: not timed
        seeds = list(range(max(counts, default=1)))
        alone = {s: together(url, [s], args.tokens, pj_index)[0] for s in seeds}
        base_finish = statistics.median(v.finish_s for v in alone.values())
        base_first = statistics.median(v.first_token_s for v in alone.values() if v.first_token_s is not None)
        print(f"{args.tokens} new tokens, the app's default run (persona fit and meters included); "
              f"one visitor alone, median of {len(seeds)} seeds: first Persona-judge token {base_first:.2f} s, "
              f"finished {base_finish:.2f} s", flush=True)
        failed = not all(v.ok for v in alone.values())
        for n in counts:
            visits = together(url, seeds[:n], args.tokens, pj_index)
            equal = {v.seed: bool(v.panels) and v.panels == alone[v.seed].panels for v in visits}
            slowest = max(v.finish_s for v in visits)
            print(f"\n{n} visitors pressing Run together (seeds 0..{n - 1}):")
            print("  seed  first PJ token (s)  finished (s)  tokens equal the lone run's")
            for v in visits:
                print(f"  {v.seed:4d}  {fmt(v.first_token_s):>18}  {fmt(v.finish_s):>12}  "
                      f"{'yes' if equal[v.seed] else 'NO'}"
                      + ("" if v.ok else "  (did not finish cleanly)"))
            print(f"  slowest finish / median lone finish: {slowest / base_finish:.2f}x; "
                  f"latest first token {max((v.first_token_s or float('inf')) for v in visits):.2f} s; "
                  f"{sum(equal.values())}/{n} visitors' tokens equal their lone runs'", flush=True)
            failed = failed or not all(v.ok for v in visits)
        if failed:
            print((app.tmp / "app.log").read_text()[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
