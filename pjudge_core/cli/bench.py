"""`python -m pjudge_core bench`: speed and memory ratios against transformers' generate();
`bench-scoring`: alignment accuracy with and without the shared-prefix scorer."""

from __future__ import annotations

import argparse
import json
import sys

from ..engine.loading import load_model
from ..evaluation.alignment import SAMPLE_PAIRS, load_pairs
from ..evaluation.benchmark import (
    format_report,
    format_scoring_report,
    run_benchmark,
    run_quantization_benchmark,
    run_scoring_benchmark,
)
from .args import add_model_arguments, load_from_args


def run(args: argparse.Namespace) -> int:
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.quantize:  # the same model in float32 and quantised, interleaved
        full = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
        models = {full.dtype: full, args.quantize: load_from_args(args)}
        report = run_quantization_benchmark(models, tokens=args.tokens, repeats=args.repeats, lam=args.lam,
                                            progress=progress)
    else:
        report = run_benchmark(load_from_args(args), short=args.tokens, long=args.long_tokens, repeats=args.repeats,
                               lam=args.lam, progress=progress)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def run_scoring(args: argparse.Namespace) -> int:
    pairs = load_pairs(args.pairs_file, limit=args.pairs, seed=args.sample_seed)
    report = run_scoring_benchmark(load_from_args(args), pairs, repeats=args.repeats, batch_size=args.batch_size,
                                   flat_batch_size=args.flat_batch_size,
                                   progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_scoring_report(report))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="per-token time and peak memory against transformers' generate(); with "
                                     "--quantize 4bit: the quantised model against float32")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--long-tokens", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lam", type=int, default=4)
    p.add_argument("--json", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=run)

    sc = sub.add_parser("bench-scoring", help="pairs/s of alignment accuracy with and without the shared-prefix "
                                              "scorer, interleaved in one process")
    sc.add_argument("--pairs", type=int, default=60, help="how many pairs (a random sample with --sample-seed)")
    sc.add_argument("--pairs-file", default=str(SAMPLE_PAIRS),
                    help="pairs JSON (default: the 60 student/PhD pairs in data/)")
    sc.add_argument("--sample-seed", type=int, default=0)
    sc.add_argument("--repeats", type=int, default=3)
    sc.add_argument("--batch-size", type=int, default=None, help="prefix-tree nodes per forward (default 64)")
    sc.add_argument("--flat-batch-size", type=int, default=None, help="sequences per flat forward (default 8)")
    sc.add_argument("--json", action="store_true")
    add_model_arguments(sc)
    sc.set_defaults(func=run_scoring)
