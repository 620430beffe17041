"""`python -m pjudge_core eval {rm, judge, align-acc, report}`: score batch outputs and models.

`eval fit` and `eval infer-acc` live in `personas`, `eval meters` in `meters`; they are
registered here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine.loading import load_model
from ..engine.methods import BASELINE
from ..errors import InputError
from ..evaluation.judges.pairwise import judge_win_rate
from ..evaluation.judges.reward_model import load_reward_model, score_rm
from ..evaluation.reports.report import write_report
from ..evaluation.runs.records import load_records
from ..evaluation.self_judge.alignment import (
    SHORT_PERSONA,
    alignment_accuracy,
    default_pairs_file,
    load_pairs,
)
from . import meters, personas, sensitivity, sharded
from .args import add_model_arguments, add_scoring_arguments, progress_bar
from .output import add_output_arguments, interval, write_json


def _rm(args: argparse.Namespace) -> int:
    records = load_records(args.inp)
    model, tok = load_reward_model(args.rm, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    result = score_rm(records, model, tok, rm_name=args.rm, dimension=args.dimension, batch_size=args.batch_size,
                      spec_a=args.spec_a, spec_b=args.spec_b, progress=None if args.quiet else progress_bar("reward"))
    write_json(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "scores" or args.all}, indent=2))
        return 0
    print(f"{result['metric']}")
    for spec, d in result["by_spec"].items():
        print(f"  {spec:<24} n={d['n']:<4} mean {interval(d)}")
    if result.get("paired"):
        p = result["paired"]
        pv = f"{p['p_value']:.3g}" if p.get("p_value") is not None else "n/a"
        print(f"  paired {p['a']} - {p['b']} over {p['n']} prompts: {interval(p)}  (p = {pv})")
    return 0


def _judge(args: argparse.Namespace) -> int:
    records = load_records(args.inp)
    lm = load_model(args.judge, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    result = judge_win_rate(records, lm, args.aspect, spec_a=args.spec_a, spec_b=args.spec_b,
                            consistency=not args.no_consistency,
                            progress=None if args.quiet else progress_bar("judge"))
    write_json(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_prompt" or args.all}, indent=2))
        return 0
    print(f"{result['a']} vs {result['b']}, judged by {result['judge']} on: {result['aspect']}")
    for key in ("win", "tie", "loss"):
        d = result[key]
        print(f"  {key:<5} {d['count']:>4}/{result['n']}  {d['rate']:.3f}  [95% Wilson {d['low']:.3f}, {d['high']:.3f}]")
    print(f"  both orders agreed on {result['position_consistent']:.0%} of the prompts")
    return 0


def _align_acc(args: argparse.Namespace) -> int:
    path = Path(args.pairs) if args.pairs else default_pairs_file()
    pairs = load_pairs(path, limit=args.limit, seed=args.sample_seed)
    run = sharded.start(args, pairs, "align-acc", "pairs")
    result = alignment_accuracy(run.lm, pairs, batch_size=args.batch_size, share=not args.no_share,
                                map_items=run.map_items)
    result = {"kind": "align-acc", "file": str(path), **result}
    if not run.write(result, args.out):
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_pair" or args.all}, indent=2))
        return 0
    print(f"alignment accuracy of {result['model']} on {result['n']} pairs: {interval(result, 'accuracy')}"
          f"  (wins {result['wins']}, ties {result['ties']}, losses {result['losses']}; ties count 1/2)")
    for persona, d in result["by_persona"].items():
        print(f"  {SHORT_PERSONA.get(persona, persona):<20} n={d['n']:<4} {interval(d, 'accuracy')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    if not args.out_md and not args.out_html:
        raise InputError("Nothing to write: pass --out-md and/or --out-html.")
    result = write_report(args.inp, args.scores, out_md=args.out_md, out_html=args.out_html,
                          axes=(args.fit_x, args.fit_y), baseline=args.baseline)
    print(result["markdown"])
    return 0


def _pair_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec-a", "--method-a", dest="spec_a", default=None,
                   help="run spec A of the paired comparison (default persona-judge)")
    p.add_argument("--spec-b", "--method-b", dest="spec_b", default=None,
                   help="run spec B (default direct)")


def add_parser(sub) -> None:
    ev = sub.add_parser("eval", help="score batch outputs (reward model, pairwise judge, persona fit, meters), "
                                     "judge capacity, persona inference accuracy, reports")
    evs = ev.add_subparsers(dest="eval_command", required=True)

    rm = evs.add_parser("rm", help="reward-model scores per run spec and the paired difference")
    rm.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    rm.add_argument("--rm", required=True, help="reward model: hub id or folder (AutoModelForSequenceClassification)")
    rm.add_argument("--dimension", type=int, default=None, help="which output to use when the RM returns several")
    rm.add_argument("--batch-size", type=int, default=4)
    _pair_arguments(rm)
    add_output_arguments(rm)
    rm.set_defaults(func=_rm)

    jd = evs.add_parser("judge", help="pairwise win rate of one run spec against another by a local LM judge")
    jd.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    jd.add_argument("--judge", required=True, help="judge causal LM: 'bundled', hub id, folder or .gguf")
    jd.add_argument("--aspect", required=True, help="what the judge compares, e.g. the preference texts")
    jd.add_argument("--no-consistency", action="store_true",
                    help="take the averaged probabilities' verdict even when the two orders disagree")
    _pair_arguments(jd)
    add_output_arguments(jd)
    jd.set_defaults(func=_judge)

    aa = evs.add_parser("align-acc", help="AlignX alignment accuracy of a model as an implicit judge")
    aa.add_argument("--pairs", default=None,
                    help="pairs JSON (default: $PJUDGE_PAIRS, else the 60 student/PhD users in data/)")
    aa.add_argument("--limit", type=int, default=None, help="score this many pairs (a random sample with --sample-seed)")
    aa.add_argument("--sample-seed", type=int, default=0,
                    help="seed of the random sample of --limit pairs (the file lists one persona first)")
    add_scoring_arguments(aa)
    sharded.add_shard_arguments(aa, "pairs", chunk=64)
    add_output_arguments(aa, device=False)
    add_model_arguments(aa)
    aa.set_defaults(func=_align_acc)

    rp = evs.add_parser("report", help="Markdown table and plotly HTML comparing the run specs")
    rp.add_argument("--in", dest="inp", required=True, action="extend", nargs="+", metavar="FILE",
                    help="batch output JSONL; repeat (or list several) to report on several runs, e.g. one per "
                         "persona combination")
    rp.add_argument("--scores", nargs="*", default=[], help="JSON files from eval rm/judge/align-acc/fit --out")
    rp.add_argument("--baseline", default=BASELINE,
                    help=f"run spec the win-rate tables compare with (default {BASELINE})")
    rp.add_argument("--out-md", default=None)
    rp.add_argument("--out-html", default=None)
    rp.add_argument("--fit-x", default=None, metavar="LABEL",
                    help="persona on the x axis of the persona-fit scatter (default A)")
    rp.add_argument("--fit-y", default=None, metavar="LABEL",
                    help="persona on the y axis of the persona-fit scatter (default B)")
    rp.set_defaults(func=_report)

    personas.add_eval_parsers(evs)
    meters.add_eval_parsers(evs)
    sensitivity.add_eval_parsers(evs)
