"""`python -m pjudge_core bench`: speed and memory ratios against transformers' generate()."""

from __future__ import annotations

import argparse
import json
import sys

from ..evaluation.benchmark import format_report, run_benchmark
from .args import add_model_arguments, load_from_args


def run(args: argparse.Namespace) -> int:
    lm = load_from_args(args)
    report = run_benchmark(lm, short=args.tokens, long=args.long_tokens, repeats=args.repeats, lam=args.lam,
                           progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="per-token time and peak memory against transformers' generate()")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--long-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lam", type=int, default=4)
    p.add_argument("--json", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=run)
