"""`python -m pjudge_core infer` (which persona one user's pairs reveal), and the two `eval`
subcommands about personas: `eval fit` (persona fit of every record of a batch run) and
`eval infer-acc` (top-1 accuracy of `infer` against the users' ground truth).

Everything a user can get wrong (files, indices, candidates) is checked before the model loads.
"""

from __future__ import annotations

import argparse
import json

from ..engine.methods import BASELINE
from ..errors import InputError
from ..evaluation.runs.records import load_records
from ..evaluation.self_judge.alignment import default_pairs_file
from ..evaluation.self_judge.fit import NOTE, run_preferences, score_fit_records
from ..evaluation.self_judge.inference import (
    candidate_texts,
    infer_persona,
    inference_accuracy,
    load_candidates,
    load_users,
    sample_users,
)
from . import sharded
from .args import add_model_arguments, add_scoring_arguments, load_from_args
from .output import add_output_arguments, interval


def _candidates(args: argparse.Namespace) -> list[str] | None:
    """The --candidates texts (None: the persona presets), checked before the model loads."""
    candidates = load_candidates(args.candidates) if args.candidates else None
    candidate_texts(candidates)
    return candidates


def _infer(args: argparse.Namespace) -> int:
    users = load_users(args.pairs)
    if not 0 <= args.index < len(users):
        raise InputError(f"--index {args.index} is out of range: {args.pairs} holds {len(users)} "
                         f"user{'s' if len(users) != 1 else ''} (0 to {len(users) - 1}).")
    user = users[args.index]
    candidates = _candidates(args)
    lm = load_from_args(args)
    inference = infer_persona(lm, user["pairs"], candidates, write=args.write, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"file": str(args.pairs), "index": args.index, "truth": user["truth"],
                          **inference.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    print(f"{inference.pairs} pairs of user {args.index} in {args.pairs}, scored by {lm.name}"
          + (f" ({len(inference.skipped)} skipped: longer than the context)" if inference.skipped else ""))
    if args.write and not inference.written:
        print("  (the model wrote no usable preference: nothing fitted its context, or it wrote nothing)")
    for rank, (text, score) in enumerate(inference.ranking, 1):
        mark = "  <- ground truth" if text == user["truth"] else ""
        print(f"  {rank:>2}. {score:>10.3f}  {inference.name(text)[:70]}{mark}")
    return 0


def _infer_acc(args: argparse.Namespace) -> int:
    path = args.pairs or default_pairs_file()
    users = sample_users(load_users(path), args.limit, args.sample_seed)
    candidates = _candidates(args)
    run = sharded.start(args, users, "infer-acc", "users", candidates=candidates)
    result = inference_accuracy(run.lm, users, candidates, batch_size=args.batch_size, map_items=run.map_items)
    result = {"kind": "infer-acc", "file": str(path), "sample_seed": args.sample_seed, **result}
    if not run.write(result, args.out):
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_user" or args.all}, indent=2,
                         ensure_ascii=False))
        return 0
    names = result["candidates"]  # {text: preset name or ""}
    print(f"top-1 persona inference of {result['model']} on {result['n']} users of {path}: "
          f"{interval(result, 'accuracy')}  ({result['correct']} right; chance {result['chance']:.3f}, "
          f"{len(names)} candidates)")
    for truth, d in result["by_persona"].items():
        guesses = ", ".join(f"{names.get(t) or t[:30]} {c}" for t, c in result["confusion"][truth].items())
        print(f"  {(names.get(truth) or truth)[:24]:<24} n={d['n']:<4} {interval(d, 'accuracy')}  (guessed: {guesses})")
    skipped = [f"{result['skipped_pairs']} pairs"] if result["skipped_pairs"] else []
    skipped += [f"{len(result['skipped_users'])} users"] if result["skipped_users"] else []
    print(f"  {result['seconds_per_user']:.2f} s per user (median {result['seconds_median']:.2f} s)"
          + (f"; skipped as longer than the context: {', '.join(skipped)}" if skipped else ""))
    return 0


def _fit(args: argparse.Namespace) -> int:
    records = load_records(args.inp)
    run_preferences(records, str(args.inp))  # refuse mixed runs before the model loads
    run = sharded.start(args, records, "fit", "records")
    result = score_fit_records(records, run.lm, source=str(args.inp), baseline=args.baseline,
                               batch_size=args.batch_size, share=not args.no_share, map_items=run.map_items)
    if not run.write(result, args.out):
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "scores" or args.all}, indent=2, ensure_ascii=False))
        return 0
    print(f"{result['metric']}, nats per token ({len(result['scores'])} records"
          + (f", {len(result['skipped'])} skipped" if result["skipped"] else "") + ")")
    for label, text in result["preferences"].items():
        print(f"  {label} = {text}")
    for spec, by_label in result["by_spec"].items():
        for label, d in by_label.items():
            print(f"  {spec:<24} {label}  n={d['n']:<4} mean {interval(d)}")
    for spec, d in result["beats_baseline"].items():
        rate = "n/a" if d["rate"] is None else f"{d['rate']:.3f}  [95% Wilson {d['low']:.3f}, {d['high']:.3f}]"
        print(f"  {spec} beats {result['baseline']} on every persona in {d['wins']}/{d['n']} prompts: {rate}")
    print(NOTE)
    return 0


def _pairs_argument(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--pairs", required=required, default=None,
                   help="JSON list of one user's pairs {prompt, chosen, rejected}, or of AlignX-style user records "
                        "(pairs in 'Pair-wise Comparative Feedback', truth in ground_truth_persona)"
                        + ("" if required else "; default: $PJUDGE_PAIRS, else the 60 student/PhD users in data/"))
    p.add_argument("--candidates", default=None,
                   help="JSON list of candidate preference texts (default: every persona preset)")
    p.add_argument("--batch-size", type=int, default=64, help="most prefix-tree nodes per forward")


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="which candidate persona best explains one user's preference pairs")
    _pairs_argument(p, required=True)
    p.add_argument("--index", type=int, default=0, help="which user of a file of user records (from 0)")
    p.add_argument("--write", action="store_true",
                   help="let the model also write a one-sentence preference from the pairs, ranked with the others")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    add_model_arguments(p)
    p.set_defaults(func=_infer)


def add_eval_parsers(evs) -> None:
    """Register `eval fit` and `eval infer-acc` on the `eval` subparsers."""
    ft = evs.add_parser("fit", help="persona fit of every record of a batch run under every persona of the run")
    ft.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    ft.add_argument("--baseline", default=BASELINE, help=f"run spec the others are compared with (default {BASELINE})")
    add_scoring_arguments(ft)
    sharded.add_shard_arguments(ft, "records", chunk=64)
    add_output_arguments(ft, device=False)
    add_model_arguments(ft)
    ft.set_defaults(func=_fit)

    ia = evs.add_parser("infer-acc", help="top-1 accuracy of persona inference against ground_truth_persona")
    _pairs_argument(ia, required=False)
    ia.add_argument("--limit", type=int, default=None, help="score this many users (a random sample with --sample-seed)")
    ia.add_argument("--sample-seed", type=int, default=0, help="seed of the random sample of users")
    sharded.add_shard_arguments(ia, "users", chunk=8)
    add_output_arguments(ia, device=False)
    add_model_arguments(ia)
    ia.set_defaults(func=_infer_acc)
