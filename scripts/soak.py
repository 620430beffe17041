"""Soak: does the app's memory stay flat over many runs? (CPU-heavy; not part of CI.)

Starts `python app.py` (the bundled model, as `make run` does) on a free port, sends the run a
first visitor sees (the default pair, query, methods and settings) with `--tokens` new tokens,
`--runs` times through the HTTP API, spread over `--visitors` sessions (each visitor's runs in a
row, as a visitor clicks Run again), and prints the server's resident memory (RSS, MiB) as it
goes and the growth over the last two thirds of the runs. Each session costs memory Gradio keeps
(up to `serving.SESSIONS` of them); the runs must not.

    python scripts/soak.py                      # 300 runs of 16 tokens by 30 visitors
    python scripts/soak.py --runs 60 --every 10 --visitors 1 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil
from appserver import served_app

MIB = 1024 * 1024


def rss_mib(process: psutil.Process) -> float:
    """The app's resident memory, its child processes included (a ZeroGPU stand-in forks)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / MIB


def files_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--every", type=int, default=25, help="print the RSS every N runs")
    parser.add_argument("--visitors", type=int, default=30, help="sessions the runs are spread over")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the app (OMP_NUM_THREADS; default: torch's own)")
    args = parser.parse_args(argv)

    from gradio_client import Client  # imported here: `--help` needs nothing

    with served_app(args.threads, prefix="pjudge-soak-") as app:
        url, tmp = app.url, app.tmp
        process = psutil.Process(app.process.pid)
        client = Client(url, verbose=False)
        per_visitor = max(1, -(-args.runs // max(1, args.visitors)))
        print(f"app up: RSS {rss_mib(process):.0f} MiB before any run; {args.runs} runs of {args.tokens} tokens by "
              f"{-(-args.runs // per_visitor)} visitors ({per_visitor} runs each)", flush=True)
        marks: dict[int, float] = {}
        started = time.perf_counter()
        for i in range(1, args.runs + 1):
            if i > 1 and (i - 1) % per_visitor == 0:
                client.reset_session()  # the next visitor
            job = client.submit(max_new_tokens=args.tokens, api_name="/run")
            outputs = job.outputs() if job.result() is not None else []
            if not any("pj-msg-ok" in str(o) for out in outputs[-1:] for o in out):
                raise SystemExit(f"run {i} did not finish cleanly: {str(outputs[-1:])[:500]}")
            if i == 1 or i % args.every == 0 or i == args.runs:
                marks[i] = rss_mib(process)
                print(f"run {i:4d}: RSS {marks[i]:7.1f} MiB, {time.perf_counter() - started:6.0f} s, "
                      f"record files {files_in(tmp / 'pjudge-runs')}, Gradio cache files {files_in(tmp / 'gradio')}",
                      flush=True)
        third = args.runs // 3
        base = max((i for i in marks if i <= third), default=1)
        growth = marks[args.runs] - marks[base]
        print(f"RSS after run {base}: {marks[base]:.1f} MiB; after run {args.runs}: {marks[args.runs]:.1f} MiB; "
              f"growth over the last {args.runs - base} runs: {growth:+.1f} MiB; "
              f"largest seen {max(marks.values()):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
