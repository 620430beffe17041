"""`python -m pjudge_core export`: a batch run as another tool's input; for now AlpacaEval's model
outputs, one generator (model:spec) per file. No model is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.runs.exports import FORMATS, alpaca_eval_outputs, check_format, output_files
from ..evaluation.runs.records import DEFAULT_PAIR, read_records
from .output import write_json


def _next_command(files: list[tuple[Path, dict]]) -> str:
    """The AlpacaEval command to run next: the paper's comparison (persona-judge against direct
    prompting) when both were exported, else the first file against AlpacaEval's own reference."""
    first = {}
    for path, g in files:
        first.setdefault(g["spec"], path)
    reference = first.get(DEFAULT_PAIR[1])
    model = first.get(DEFAULT_PAIR[0]) or next((path for path, _ in files if path != reference), files[0][0])
    if reference is None or reference == model:
        return f"alpaca_eval evaluate --model_outputs {model}"
    return f"alpaca_eval evaluate --model_outputs {model} --reference_outputs {reference} --fn_metric get_winrate"


def _run(args: argparse.Namespace) -> int:
    check_format(args.format)
    records = read_records(args.inp)
    result = alpaca_eval_outputs(records, specs=args.specs, seed=args.seed, model_name=args.model_name,
                                 source=args.inp)
    files = output_files(result["generators"], args.out)
    for path, generator in files:
        write_json(generator["entries"], str(path))
    seeds = result["seeds"]
    note = ""
    if len(seeds) > 1:
        note = f" (run seed {result['seed']} of {', '.join(str(s) for s in seeds)}" \
               + ("; choose with --seed)" if args.seed is None else ")")
    print(f"exported {len(files)} generator{'s' if len(files) > 1 else ''} from {args.inp} as AlpacaEval model "
          f"outputs{note}")
    width = max(len(g["name"]) for _, g in files)
    for path, g in files:
        empty = f" ({g['empty']} empty)" if g["empty"] else ""
        print(f"  {g['name']:<{width}}  {len(g['entries'])} answers{empty} -> {path}")
    print(f"next, in AlpacaEval's own environment with its API judge: {_next_command(files)}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a batch run as another tool's input: AlpacaEval's model outputs, "
                                      "one generator (model:spec) per file")
    p.add_argument("--in", dest="inp", required=True, metavar="FILE", help="batch output JSONL")
    p.add_argument("--format", required=True, metavar="FORMAT", help=f"the only format: {', '.join(FORMATS)}")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="a folder: one <spec>.json per generator (what alpaca_eval --model_outputs reads); or a "
                        ".json file when one spec is exported")
    p.add_argument("--spec", "--specs", dest="specs", default=None, metavar="SPECS",
                   help="comma-separated run specs to export (default: every spec in the file)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="the run seed (batch's --seed) to export when the file pools runs of several seeds "
                        "(default: the lowest; the generator names then end in :seed=N)")
    p.add_argument("--model-name", default=None, metavar="NAME",
                   help="the model part of the generator names (default: the run's model, e.g. "
                        "SmolLM2-135M-Instruct); give each exported run a name of its own, as AlpacaEval skips a "
                        "name its leaderboard already holds")
    p.set_defaults(func=_run)
