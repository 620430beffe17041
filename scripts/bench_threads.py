"""Why the page's handlers run in threads of their own (`serving.served`, `turns.in_own_thread`):
one visitor's default run, in one process, as Gradio drives it. (CPU-heavy; not part of CI.)

Gradio advances a streaming handler in its worker threads, which stay alive after the call. Here
a worker thread that lives as long as the measurement does the same with the Run handler of
`app.build_demo()` (the page's defaults, `--tokens` new tokens, persona fit included), first as
served (every step in a new thread), then unserved (every step in the worker itself, as before),
then served again, `--repeats` runs each. It prints the median of each and the ratio unserved /
served: above 1 means the unserved worker's OpenMP team slowed the engine's forwards.

    python scripts/bench_threads.py                 # 64 tokens, 3 runs each
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from appserver import ROOT


def timed_runs(handler, inputs: list, repeats: int) -> list[float]:
    """Seconds of each run, every step advanced by one long-lived worker thread (as Gradio does)."""
    seconds = []
    with ThreadPoolExecutor(1) as worker:
        for _ in range(repeats):
            started = time.perf_counter()
            updates = handler(*inputs)
            while worker.submit(next, updates, None).result() is not None:
                pass
            seconds.append(time.perf_counter() - started)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import app

    demo = app.build_demo()
    run = next(fn for fn in demo.fns.values() if fn.api_name == "run")
    inputs = [block.value for block in run.inputs]
    names = [block.label for block in run.inputs]
    inputs[names.index("Max new tokens")] = args.tokens
    served, unserved = run.fn, run.fn.__wrapped__
    timed_runs(served, inputs, 1)  # loads the model (in a thread of its own) and warms up: not timed
    times = {"served": timed_runs(served, inputs, args.repeats), "unserved": timed_runs(unserved, inputs, args.repeats)}
    times["served again"] = timed_runs(served, inputs, args.repeats)
    for name, seconds in times.items():
        print(f"{name:13s} median {statistics.median(seconds):5.2f} s  ({', '.join(f'{s:.2f}' for s in seconds)})")
    served_median = statistics.median(times["served"] + times["served again"])
    print(f"unserved / served: {statistics.median(times['unserved']) / served_median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
