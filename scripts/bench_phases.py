"""Why block-wise requests join in phase (`Scheduler.in_phase`): visitors' default runs on one engine,
in one process. (CPU-heavy; not part of CI.)

Each visitor is the page's default run: Persona-judge and direct prompting on the default pair and
query, `--tokens` new tokens, its own seed. N visitors arrive one engine step apart (as visitors
pressing Run together reach the engine within a few steps of each other), decoded twice:

* in phase: as the engine admits them, each Persona-judge request at the step where the running
  ones start a block, so that their judges share a forward;
* as they come: the same requests with no period, each joining at the step it arrives.

It prints each case's seconds, steps and forwards, its ratio to one visitor alone, and whether every
visitor's tokens equal its lone run's (they must: a request's tokens do not depend on when it joins).

    python scripts/bench_phases.py                  # 64 tokens; 4 and 8 visitors
    python scripts/bench_phases.py --tokens 32 --visitors 2,4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from appserver import ROOT


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--visitors", default="4,8", help="visitor counts (comma-separated)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.visitors.split(",") if n.strip()]

    sys.path.insert(0, str(ROOT))
    from pjudge_core.engine.engine import Engine
    from pjudge_core.engine.loading import load_model
    from pjudge_core.presets import pair
    from pjudge_core.ui import lab
    from pjudge_core.ui.models import first_run

    lm = load_model()
    first_pair, query, recommended = first_run(None)  # what a first visitor runs on the bundled model
    preferences = list(pair(first_pair))

    def visitor(seed: int, phased: bool) -> list:
        settings = dataclasses.replace(recommended, max_new_tokens=args.tokens, seed=seed)
        jobs = [lab.slot_spec(slot).job(lm, query, preferences, settings) for slot in lab.default_slots()]
        for job in jobs:
            job.period = job.period if phased else None  # None: joins at the step it arrives
        return jobs

    def run(seeds: list[int], phased: bool) -> tuple[float, int, int, list]:
        """Seconds, steps, forwards and token ids of visitors arriving one step apart."""
        engine, jobs, arriving = Engine(lm), [], list(seeds)
        started = time.perf_counter()
        while arriving or engine.busy:
            if arriving:
                jobs += [engine.submit(job) for job in visitor(arriving.pop(0), phased)]
            engine.step()
        seconds = time.perf_counter() - started
        return seconds, engine.steps, engine.forwards, [job.result.token_ids for job in jobs]

    run([999], True)  # warm-up
    alone, _, _, _ = min((run([0], True) for _ in range(2)), key=lambda r: r[0])
    print(f"{args.tokens} new tokens, the page's default run; one visitor alone {alone:.2f} s")
    failed = False
    for n in counts:
        seeds = list(range(n))
        lone = [tokens for s in seeds for tokens in run([s], True)[3]]
        print(f"\n{n} visitors, one step apart:")
        for phased in (True, False):
            seconds, steps, forwards, tokens = run(seeds, phased)
            equal = tokens == lone
            failed = failed or not equal
            print(f"  {'in phase     ' if phased else 'as they come '} {seconds:6.2f} s  {steps:4d} steps  "
                  f"{forwards:4d} forwards  {1000 * seconds / steps:4.0f} ms/step  {seconds / alone:.2f}x alone  "
                  f"tokens equal lone runs: {'yes' if equal else 'NO'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
