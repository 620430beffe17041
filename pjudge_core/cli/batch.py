"""`python -m pjudge_core batch`: many prompts x several run specs into a resumable JSONL file,
`--rows` records decoding together, on one process or several (torchrun / accelerate launch)."""

from __future__ import annotations

import argparse
import sys

from ..engine.engine import DEFAULT_ROWS, MAX_ROWS
from ..engine.requests import check_rows
from ..engine.specs import parse_specs
from ..errors import InputError
from ..evaluation.runs.batch import DEFAULT_SPECS, run_batch
from ..evaluation.runs.sharding import Processes
from .args import (
    add_decode_arguments,
    add_model_arguments,
    add_preference_arguments,
    load_from_args,
    preferences_from_args,
    prompts_from_args,
    settings_from_args,
)


def run(args: argparse.Namespace) -> int:
    preferences = preferences_from_args(args)
    if not preferences:
        raise InputError("Batch generation needs preferences: pass --pref-a and --pref-b (or --pref, --persona), "
                         "or --preset NAME.")
    check_rows(args.rows)
    specs = parse_specs(args.specs)
    settings = settings_from_args(args)
    for spec in specs:
        spec.check(preferences, settings)  # fail before a slow load
    prompts = prompts_from_args(args)
    processes = Processes(args.device)  # several under torchrun / accelerate launch, else just this one
    args.device = processes.device
    with processes.main_first():  # the main process alone fills the bundled model's cache
        lm = load_from_args(args)
    if processes.is_main:
        print(f"{len(prompts)} prompts x {len(specs)} run specs on {lm.describe()}"
              + (f", {processes.size} processes" if processes.size > 1 else ""), file=sys.stderr)
    summary = run_batch(lm, prompts, preferences, args.out, specs=specs, settings=settings, resume=args.resume,
                        overwrite=args.overwrite, trace=args.trace, progress=not args.quiet, rows=args.rows,
                        processes=processes)
    if not processes.is_main:
        return 0
    for failure in summary["failed"]:
        print(f"skipped {failure['id']} {failure['spec']}: {failure['error']}", file=sys.stderr)
    print(f"wrote {summary['written']} records to {summary['out']} ({summary['skipped']} already there"
          + (f", {len(summary['failed'])} refused" if summary["failed"] else "")
          + f") in {summary['seconds']:.1f} s, {summary['rows']} rows at a time", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("batch", help="generate many prompts with several run specs into a resumable JSONL file")
    p.add_argument("--prompts", required=True, help="JSON list [{id, prompt}], JSONL, or one prompt per line")
    p.add_argument("--specs", "--methods", dest="specs", default=DEFAULT_SPECS,
                   help="comma-separated run specs, e.g. 'persona-judge,persona-judge-base,direct,direct[A],"
                        "fusion(alpha=0.5)' (see README)")
    p.add_argument("--out", required=True, help="output JSONL, one record per (prompt id, run spec)")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--resume", action="store_true", help="skip the records already in --out")
    p.add_argument("--overwrite", action="store_true", help="start --out afresh")
    p.add_argument("--trace", action="store_true", help="keep the per-token trace ('steps') in each record")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                   help=f"records decoded together (1-{MAX_ROWS}; default {DEFAULT_ROWS}); the records do not "
                        "depend on it, only the speed and the order of the lines")
    add_preference_arguments(p)
    add_model_arguments(p)
    add_decode_arguments(p, seed=0)
    p.set_defaults(func=run)
