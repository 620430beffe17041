"""`python -m pjudge_core table2`: the paper's Table 2 offline, in one command.

For every persona combination (one P-Soups persona per dimension; all eight by default) a batch
run of Persona-judge with the three personas rotating against direct prompting with the three
preferences in one prompt, the persona fit of every answer under the writing model, optionally a
judge model's verdicts (`--judge`) and the fit under another model (`--fit-model`), then the report
in the paper's layout (`evaluation.table2`). Files go to --out-dir: one JSONL per combination, one
score file per combination and scorer, ``table2.md`` and ``table2.html``. Rerunning the command
continues an interrupted run (every batch resumes; a score file is rebuilt only when its run gained
records).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from ..engine.engine import DEFAULT_ROWS
from ..engine.methods import DEFAULT_SPECS
from ..engine.requests import check_rows
from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec, parse_specs
from ..errors import InputError
from ..evaluation.judges.pairwise import judge_win_rate
from ..evaluation.reports.report import write_report
from ..evaluation.reports.table2 import combinations, slug
from ..evaluation.runs.batch import run_batch
from ..evaluation.runs.records import load_records
from ..evaluation.self_judge.fit import BASELINE, score_fit_records
from ..paths import DATA
from ..presets import presets
from .args import (
    add_decode_arguments,
    add_model_arguments,
    load_from_args,
    load_other,
    model_settings_from_args,
    prompts_from_args,
)
from .output import write_json

DEFAULT_PROMPTS = DATA / "koala_eval_50.json"


def reproduce(lm, prompts: list[dict], out_dir: Path, *, combos, specs: str, decode: DecodeSettings,
              fit: bool = True, fit_lm=None, judge_lm=None, baseline: str = BASELINE, progress: bool = True,
              rows: int = DEFAULT_ROWS) -> dict:
    """Run, score and report (module docstring); returns the files and seconds per stage."""
    out_dir.mkdir(parents=True, exist_ok=True)
    personas = presets().personas
    others = [s.key for s in parse_specs(specs) if s.key != baseline]
    timings: dict[str, float] = defaultdict(float)
    runs, score_files = [], []

    def timed(stage: str, target: Path, changed: bool, make) -> None:
        if changed or not target.exists():
            started = time.perf_counter()
            write_json(make(), str(target))
            timings[stage] += time.perf_counter() - started
        score_files.append(target)

    for k, combo in enumerate(combos, 1):
        name, texts = slug(combo), [personas[p].text for p in combo]
        path = out_dir / f"{name}.jsonl"
        print(f"[{k}/{len(combos)}] {' + '.join(combo)} -> {path}", file=sys.stderr)
        started = time.perf_counter()
        summary = run_batch(lm, prompts, texts, path, specs=specs, settings=decode, resume=True, progress=progress,
                            rows=rows)
        timings["generate"] += time.perf_counter() - started
        for failure in summary["failed"]:
            print(f"skipped {failure['id']} {failure['spec']}: {failure['error']}", file=sys.stderr)
        records, changed = load_records(path), summary["written"] > 0
        runs.append(path)
        if fit:
            timed("fit", out_dir / f"fit-{name}.json", changed,
                  lambda: score_fit_records(records, lm, source=str(path), baseline=baseline))
        if fit_lm is not None:
            timed("fit-model", out_dir / f"fit-model-{name}.json", changed,
                  lambda: score_fit_records(records, fit_lm, source=str(path), baseline=baseline))
        if judge_lm is not None:
            for persona in combo:
                for spec in others:
                    timed("judge", out_dir / f"judge-{name}-{slug([persona])}-{RunSpec.parse(spec).slug}.json", changed,
                          lambda: judge_win_rate(records, judge_lm, personas[persona].text, spec_a=spec,
                                                 spec_b=baseline))
    started = time.perf_counter()
    report = write_report(runs, score_files, out_md=out_dir / "table2.md", out_html=out_dir / "table2.html",
                          baseline=baseline)
    timings["report"] = time.perf_counter() - started
    return {"runs": runs, "scores": score_files, "timings": dict(timings), "markdown": report["markdown"]}


def run(args: argparse.Namespace) -> int:
    check_rows(args.rows)
    combos = combinations(args.combinations)
    specs = parse_specs(args.specs)
    if args.baseline not in [s.key for s in specs]:
        raise InputError(f"--specs must include the baseline {args.baseline!r}; got {args.specs!r}.")
    if args.fit_model and args.fit_model == args.model:
        raise InputError("--fit-model names the writing model, whose fit is scored anyway; name another model.")
    decode = model_settings_from_args(args)
    for combo in combos:
        for spec in specs:
            spec.check([presets().personas[p].text for p in combo], decode)  # fail before a slow load
    prompts = prompts_from_args(args)
    started = time.perf_counter()
    lm = load_from_args(args)
    judge_lm, fit_lm = load_other(args.judge, args), load_other(args.fit_model, args)
    loaded = time.perf_counter() - started
    print(f"{len(combos)} combinations x {len(prompts)} prompts x {len(specs)} run specs on {lm.describe()}, "
          f"{decode.max_new_tokens} new tokens", file=sys.stderr)
    result = reproduce(lm, prompts, Path(args.out_dir), combos=combos, specs=args.specs, decode=decode,
                       fit=not args.no_fit, fit_lm=fit_lm, judge_lm=judge_lm, baseline=args.baseline,
                       progress=not args.quiet, rows=args.rows)
    print(result["markdown"])
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result["timings"].items())
    total = time.perf_counter() - started
    print(f"Wrote {Path(args.out_dir) / 'table2.md'} and table2.html in {total:.0f} s (loading {loaded:.0f} s, "
          f"{stages}).", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("table2", help="the paper's Table 2 offline: Persona-judge with three rotating personas vs "
                                      "direct prompting, one run per P-Soups persona combination, and the report")
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompt file (default data/koala_eval_50.json)")
    p.add_argument("--out-dir", default="out/table2", help="where the runs, scores and table2.md/.html go")
    p.add_argument("--combinations", default="all",
                   help="'all' (the eight), or e.g. 'elementary+concise+friendly,PhD+detailed+unfriendly'")
    p.add_argument("--specs", default=DEFAULT_SPECS, help=f"run specs (default {DEFAULT_SPECS}; must include the "
                                                          "baseline)")
    p.add_argument("--baseline", default=BASELINE, help=f"run spec the win rates compare with (default {BASELINE})")
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--no-fit", action="store_true", help="skip the persona fit under the writing model")
    p.add_argument("--fit-model", default=None, help="also score persona fit under this model (hub id, folder)")
    p.add_argument("--judge", default=None,
                   help="also judge each spec against the baseline per persona with this model (eval judge)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"records decoded together (default {DEFAULT_ROWS})")
    add_model_arguments(p)
    add_decode_arguments(p, seed=0)
    p.set_defaults(func=run)
