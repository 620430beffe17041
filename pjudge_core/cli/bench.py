"""`python -m pjudge_core bench`: speed and memory ratios against transformers' generate();
`bench-batch`: the batched engine against one request at a time; `check-batch`: requests decoded
together against alone, token for token; `bench-scoring`: alignment accuracy with and without the
shared-prefix scorer."""

from __future__ import annotations

import argparse
import json
import sys

from ..bench.batch_check import MODES, check_batched, format_check, mixed_requests
from ..bench.batched import format_batched_report, run_batched_benchmark
from ..bench.decoding import format_report, run_benchmark, run_quantization_benchmark
from ..bench.scoring import format_scoring_report, run_scoring_benchmark
from ..engine.loading import load_model
from ..engine.requests import check_rows
from ..errors import InputError
from ..evaluation.self_judge.alignment import SAMPLE_PAIRS, load_pairs
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


def run_batched(args: argparse.Namespace) -> int:
    report = run_batched_benchmark(load_from_args(args), tokens=args.tokens, repeats=args.repeats,
                                   sizes=tuple(args.sizes), progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_batched_report(report))
    return 0


def run_check(args: argparse.Namespace) -> int:
    check_rows(args.rows)
    requests = mixed_requests(args.requests, seed=args.sample_seed, max_new_tokens=args.tokens)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise InputError(f"--modes takes {', '.join(MODES)} (comma-separated); got {args.modes!r}.")
    report = check_batched(load_from_args(args), requests, args.rows, modes=modes,
                           progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_check(report))
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

    bb = sub.add_parser("bench-batch", help="throughput of requests decoded together against one at a time, and the "
                                           "lab's panels together against one row at a time, interleaved")
    bb.add_argument("--tokens", type=int, default=128)
    bb.add_argument("--repeats", type=int, default=2)
    bb.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                    help="requests decoded together for the tokens/s table")
    bb.add_argument("--json", action="store_true")
    add_model_arguments(bb)
    bb.set_defaults(func=run_batched)

    ck = sub.add_parser("check-batch", help="decode mixed requests together and one by one; how many are identical "
                                           "token for token, and why any differ")
    ck.add_argument("--requests", type=int, default=100)
    ck.add_argument("--tokens", type=int, default=64, help="the longest budget (budgets vary from 1 to this)")
    ck.add_argument("--rows", type=int, default=16, help="requests decoded together")
    ck.add_argument("--sample-seed", type=int, default=0, help="which mixed requests")
    ck.add_argument("--modes", default=",".join(MODES),
                    help="fast (rows share forwards), reproducible (each request in forwards of its own), or both")
    ck.add_argument("--json", action="store_true")
    add_model_arguments(ck)
    ck.set_defaults(func=run_check)

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
