"""`python -m pjudge_core eval meters`: the independent meters (reading grade, words, VADER
sentiment) of one or more batch runs, or, with ``--validate``, the evidence that they measure
what the personas ask for. No model is loaded."""

from __future__ import annotations

import argparse
import json

from ..engine.methods import BASELINE
from ..errors import InputError
from ..evaluation.meters import METERS, NOTE, measure
from ..evaluation.meters.runs import score_meter_runs
from ..evaluation.meters.validity import sentiment_agreement, validate_pairs
from ..evaluation.reports.wins import win_cell
from ..evaluation.runs.records import load_records
from ..evaluation.self_judge.alignment import default_pairs_file, load_pairs
from .output import interval, write_json


def _pct(d: dict, key: str = "accuracy") -> str:
    if d.get(key) is None:
        return "n/a"
    return f"{d[key]:.3f}  [95% Wilson {d['low']:.3f}, {d['high']:.3f}]"


def _run(args: argparse.Namespace) -> int:
    if args.validate:
        return _validate(args)
    if not args.inp:
        raise InputError("Pass --in FILE (a batch output), or --validate.")
    runs = [(path, load_records(path)) for path in args.inp]
    measure("Warm up. The dictionaries load on the first call.")  # kept out of the timing
    result = score_meter_runs(runs, baseline=args.baseline)
    write_json(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "rows" or args.all}, indent=2, ensure_ascii=False))
        return 0
    n = len(result["rows"])
    print(f"meters of {n} answers in {len(runs)} run{'s' if len(runs) > 1 else ''} "
          f"({result['seconds_per_100']:.3f} s per 100 answers)")
    for spec, d in result["by_spec"].items():
        cut = d["cut_by_budget"]
        print(f"  {spec:<24} n={d['n']:<4} cut by the token budget {cut['count']}/{d['n']} = {cut['share']:.2f}")
        for name in METERS:
            print(f"    {name:<22} mean {interval(d[name])}")
    if result["objectives"] and not result["has_baseline"]:
        print(f"  (no {result['baseline']!r} records: nothing to compare against; see --baseline)")
    for persona, by_spec in result["wins"].items():
        o = result["objectives"][persona]
        for spec, d in by_spec.items():
            print(f"  {persona} ({o['meter']} {o['direction']}): {spec} vs {result['baseline']}: "
                  f"W/T/L {d['wins']}/{d['ties']}/{d['losses']} of {d['n']}; win rate ties ½ {d['rate_half']:.3f} "
                  f"[{d['low_half']:.3f}, {d['high_half']:.3f}], ties 0 {win_cell(d, 3)}")
    if args.all:
        for row in result["rows"]:
            print(json.dumps({"file": row["file"], "id": row["id"], "spec": row["spec"], "meters": row["meters"]},
                             ensure_ascii=False))
    print(NOTE)
    return 0


def _validate(args: argparse.Namespace) -> int:
    path = args.pairs or default_pairs_file()
    result = {"kind": "meters-validity", "file": str(path), **validate_pairs(load_pairs(path))}
    result["sentiment"] = [sentiment_agreement(p) for p in args.sentiment_truth]
    write_json(result, args.out)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    print(f"{result['n']} labelled pairs of {path} ({result['distinct']['n']} distinct)"
          + (f"; {result['unmatched']} name a persona without a meter" if result["unmatched"] else ""))
    for name, d in result["by_meter"].items():
        dd = result["distinct"]["by_meter"][name]
        print(f"  {name}: ranks the chosen answer the persona's way in {_pct(d)} of {d['n']} pairs "
              f"({d['ties']} ties, ½ each); distinct pairs {_pct(dd)} of {dd['n']}")
    for persona, d in result["by_persona"].items():
        print(f"    {persona:<12} ({d['meter']} {d['direction']}) {_pct(d)}  n={d['n']}")
    for persona, by in result["chosen_higher"].items():
        print(f"  chosen answer higher than rejected, {persona} users: "
              + "; ".join(f"{name} {d['accuracy']:.2f}" for name, d in by.items()))
    for s in result["sentiment"]:
        p, sp, sign = s["pearson"], s["spearman"], s["sign"]
        print(f"  vader_compound vs human ratings in {s['file']} (n={s['n']}): Pearson {p['r']:.3f} "
              f"[{p['low']:.3f}, {p['high']:.3f}], Spearman {sp['r']:.3f} [{sp['low']:.3f}, {sp['high']:.3f}]; "
              f"sign agrees on {sign['agree']}/{sign['n']} non-neutral texts = {_pct(sign, 'rate')}")
    return 0


def add_eval_parsers(evs) -> None:
    p = evs.add_parser("meters", help="independent meters (Flesch-Kincaid grade, words, VADER sentiment) per run "
                                      "spec, and win rates against direct prompting per persona; --validate checks "
                                      "them against labelled pairs")
    p.add_argument("--in", dest="inp", action="extend", nargs="+", default=[], metavar="FILE",
                   help="batch output JSONL; repeat (or list several) to pool runs, e.g. one per persona combination")
    p.add_argument("--baseline", default=BASELINE, help=f"run spec the others are compared with (default {BASELINE})")
    p.add_argument("--validate", action="store_true",
                   help="instead: how often each persona's meter ranks the chosen answer of --pairs above the "
                        "rejected one")
    p.add_argument("--pairs", default=None,
                   help="with --validate: AlignX-style pairs with ground_truth_persona (default: $PJUDGE_PAIRS, else "
                        "the 60 student/PhD users in data/)")
    p.add_argument("--sentiment-truth", action="append", default=[], metavar="FILE",
                   help="with --validate: human sentiment ratings, lines 'id <tab> mean rating <tab> text' (VADER's "
                        "evaluation data); repeatable")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--all", action="store_true", help="also every record's meters (file, id, spec, meters)")
    p.add_argument("--out", default=None, help="also write the full result as JSON")
    p.set_defaults(func=_run)
