"""`python -m pjudge_core ablation`: the paper's ablation on one model, in one resumable command.

On the same prompts, with the same seed per prompt, for every decoding mode (sampling with the
given settings, and greedy, the paper's decoding): a control run (no preference, and the placebo
alone) and, per persona pair, each persona alone, direct prompting, persona-judge, persona-judge-base,
official, official-base and fusion at α 0 and 0.5 (`reports.ablation.PAIR_SPECS`); then the
sensitivity of every persona (`eval sensitivity`: KL against the placebo along no-preference
answers), optionally a judge model's verdicts against direct (`--judge`), and the report: one
table per mode, pair and measured persona (`reports.ablation`). Files go to --out-dir: one JSONL
per mode and pair (``sample-controls.jsonl``, ``sample-elementary+concise.jsonl``, ...),
``sensitivity.json``, ``judge-*.json``, ``ablation.json`` and ``ablation.md``. Rerunning the
command continues an interrupted run: every batch resumes, and a score file is reused when it
matches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..engine.engine import DEFAULT_ROWS
from ..engine.requests import check_rows
from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec
from ..errors import InputError
from ..evaluation.judges.pairwise import judge_win_rate
from ..evaluation.meters import persona_targets
from ..evaluation.reports import ablation as report
from ..evaluation.reports.table2 import combinations, slug
from ..evaluation.reports.wins import judge_outcomes, win_rates
from ..evaluation.runs.batch import run_batch
from ..evaluation.runs.records import load_records
from ..evaluation.self_judge.sensitivity import PLACEBO, sensitivity
from ..paths import DATA
from ..presets import presets
from .args import (
    add_decode_arguments,
    add_model_arguments,
    load_from_args,
    load_other,
    model_settings_from_args,
    progress_bar,
    prompts_from_args,
)
from .output import write_json

DEFAULT_PROMPTS = DATA / "koala_eval_50.json"
DEFAULT_PAIRS = "elementary+concise,PhD+detailed,poem+one sentence"  # two opposite paper pairs, the showcase
MODES = ("sample", "greedy")
DEFAULT_TOKENS = 256  # the bundled model ends most answers before it (the cut share is reported)


def read_pairs(text: str) -> list[tuple[str, str]]:
    """Persona pairs 'a+b,c+d' of preset names (official and persona-judge-base take exactly two)."""
    pairs = combinations(text)
    wrong = [p for p in pairs if len(p) != 2]
    if wrong:
        raise InputError(f"--pairs takes two personas per pair ('elementary+concise,poem+one sentence'); got "
                         f"{'+'.join(wrong[0])!r}.")
    return pairs


def mode_settings(decode: DecodeSettings, mode: str) -> DecodeSettings:
    return decode.replace(greedy=True) if mode == "greedy" else decode.replace(greedy=False)


def _cached(path: Path, key: dict, make) -> dict:
    """The JSON at `path` when it was made for `key`, else `make()` written there with the key."""
    if path.exists():
        found = json.loads(path.read_text())
        if found.get("key") == key:
            return found["value"]
    value = make()
    write_json({"key": key, "value": value}, str(path))
    return value


def run_ablation(lm, prompts: list[dict], out_dir: Path, *, pairs, modes=MODES, decode: DecodeSettings,
                 rows: int = DEFAULT_ROWS, placebo: str = PLACEBO, judge_lm=None, progress: bool = True) -> dict:
    """Write the runs, the sensitivity, the judge's verdicts and the report (module docstring);
    returns the report's JSON with its markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    personas = presets().personas
    timings: dict[str, float] = {}

    def batch(path: Path, preferences: list[str], specs, settings: DecodeSettings) -> list[dict]:
        print(f"{path.name}", file=sys.stderr)
        started = time.perf_counter()
        summary = run_batch(lm, prompts, preferences, path, specs=list(specs), settings=settings, resume=True,
                            progress=progress, rows=rows)
        timings["generate"] = timings.get("generate", 0.0) + time.perf_counter() - started
        for failure in summary["failed"]:
            print(f"skipped {failure['id']} {failure['spec']}: {failure['error']}", file=sys.stderr)
        return load_records(path)

    runs: dict[str, dict] = {}
    for mode in modes:
        settings = mode_settings(decode, mode)
        controls = batch(out_dir / f"{mode}-controls.jsonl", [placebo], report.CONTROL_SPECS, settings)
        runs[mode] = {"settings": settings.to_dict(), "controls": controls, "pairs": {}}
        for pair in pairs:
            records = batch(out_dir / f"{mode}-{slug(pair)}.jsonl", [personas[p].text for p in pair],
                            report.PAIR_SPECS, settings)
            runs[mode]["pairs"][slug(pair)] = (pair, records)

    names = list(dict.fromkeys(p for pair in pairs for p in pair))
    started = time.perf_counter()
    bars: dict = {}
    sens = _cached(out_dir / "sensitivity.json",
                   {"model": lm.name, "prompts": [p["id"] for p in prompts], "personas": names, "placebo": placebo,
                    "settings": decode.to_dict()},
                   lambda: sensitivity(lm, [p["prompt"] for p in prompts], {n: personas[n].text for n in names},
                                       placebo=placebo, settings=mode_settings(decode, "sample"),
                                       seeds=[decode.seed or 0], rows=rows,
                                       progress=lambda stage, done, total: bars.setdefault(
                                           stage, progress_bar(f"sensitivity {stage}"))(done, total)
                                       if progress else None))
    timings["sensitivity"] = time.perf_counter() - started

    out = {"kind": "ablation", "model": lm.describe(), "prompts": len(prompts), "pairs": [list(p) for p in pairs],
           "placebo": placebo, "sensitivity": sens, "modes": {}}
    started = time.perf_counter()
    for mode, run in runs.items():
        tables = {}
        for name, (pair, records) in run["pairs"].items():
            preferences = dict(zip("AB", (personas[p].text for p in pair)))
            judged = _judge(judge_lm, out_dir, mode, name, records, preferences) if judge_lm is not None else None
            tables[name] = {"pair": list(pair), "acceptance": report.acceptance(records, report.PJ_VS_OFFICIAL[0]),
                            "tables": report.pair_tables(run["controls"], records, preferences, judged)}
        every = run["controls"] + [r for _, records in run["pairs"].values() for r in records]
        out["modes"][mode] = {"settings": run["settings"], "cut": report.cut_share(every), "pairs": tables}
    timings["report"] = time.perf_counter() - started
    out["timings"] = timings
    out["markdown"] = markdown(out)
    write_json(out, str(out_dir / "ablation.json"))
    (out_dir / "ablation.md").write_text(out["markdown"] + "\n")
    return out


def _judge(judge_lm, out_dir: Path, mode: str, name: str, records: list[dict], preferences: dict) -> dict:
    """{persona: {spec: the judge's win rates against direct}}, each verdict file cached in judge-*.json."""
    judged: dict[str, dict] = {}
    for label, target in persona_targets(preferences).items():
        for spec in dict.fromkeys(r["spec"] for r in records):
            if spec == report.DIRECT:
                continue
            path = out_dir / f"judge-{mode}-{name}-{slug([target.persona])}-{RunSpec.parse(spec).slug}.json"
            key = {"judge": judge_lm.name, "records": len(records), "spec": spec}
            result = _cached(path, key, lambda: judge_win_rate(records, judge_lm, preferences[label], spec_a=spec,
                                                               spec_b=report.DIRECT))
            judged.setdefault(target.persona, {})[spec] = win_rates(judge_outcomes(result))
    return judged


def markdown(out: dict) -> str:
    lines = [f"# Ablation: {out['model']}, {out['prompts']} prompts", "",
             "## Does the model follow the personas? (sensitivity)", "",
             report.sensitivity_markdown(out["sensitivity"]), "",
             "## Headline: persona-judge against no preference, direct prompting and official", "",
             "Paired shifts in each meter's units with 95% intervals (the tables below have every run).", "",
             report.headline_markdown(out["modes"])]
    for mode, run in out["modes"].items():
        s, cut = run["settings"], run["cut"]
        how = "greedy" if s["greedy"] else f"sampling: T {s['temperature']}, top-k {s['top_k']}, top-p {s['top_p']}"
        lines += ["", f"## {mode}: {how}, repetition penalty {s['repetition_penalty']}, λ {s['lam']}, "
                      f"{s['max_new_tokens']} new tokens; the budget cut {cut['share']:.0%} of the answers "
                      f"[{cut['low']:.0%}, {cut['high']:.0%}]"]
        for entry in run["pairs"].values():
            accepted = "" if entry["acceptance"] is None else \
                f" (persona-judge's judges accepted {entry['acceptance']:.0%} of the drafts)"
            lines += ["", f"### {' + '.join(entry['pair'])}{accepted}"]
            for table in entry["tables"].values():
                lines += ["", report.table_markdown(table, entry["pair"])]
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    rows = check_rows(args.rows)
    pairs = read_pairs(args.pairs)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise InputError(f"--modes takes {' and/or '.join(MODES)}, comma-separated; got {args.modes!r}.")
    decode = model_settings_from_args(args)
    for spec in report.PAIR_SPECS:
        RunSpec.parse(spec).check(["A", "B"], decode)  # fail before a slow load
    prompts = prompts_from_args(args)
    started = time.perf_counter()
    lm = load_from_args(args)
    judge_lm = load_other(args.judge, args)
    per_mode = len(prompts) * (len(report.CONTROL_SPECS) + len(pairs) * len(report.PAIR_SPECS))
    print(f"{len(modes)} modes x {per_mode} answers ({len(pairs)} pairs) on {lm.describe()}, "
          f"{decode.max_new_tokens} new tokens -> {args.out_dir}", file=sys.stderr)
    out = run_ablation(lm, prompts, Path(args.out_dir), pairs=pairs, modes=modes, decode=decode, rows=rows,
                       placebo=args.placebo, judge_lm=judge_lm, progress=not args.quiet)
    print(out["markdown"])
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in out["timings"].items())
    print(f"Wrote {Path(args.out_dir) / 'ablation.md'} in {time.perf_counter() - started:.0f} s ({stages}).",
          file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("ablation", help="every method against no preference, a placebo and direct prompting, "
                                        "sampling and greedy, per persona pair; resumable")
    p.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"persona preset pairs (default {DEFAULT_PAIRS!r})")
    p.add_argument("--modes", default=",".join(MODES), help="sample, greedy or both (default both)")
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompt file (default data/koala_eval_50.json)")
    p.add_argument("--limit", type=int, default=20, help="the first N prompts (default 20)")
    p.add_argument("--placebo", default=PLACEBO, help="the preference that asks for nothing")
    p.add_argument("--judge", default=None, help="also judge each spec against direct per persona with this model")
    p.add_argument("--out-dir", default="out/ablation", help="where the runs, scores and ablation.md go")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"records decoded together (default {DEFAULT_ROWS})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(p)
    add_decode_arguments(p, seed=0, max_new_tokens=DEFAULT_TOKENS)  # --greedy: see --modes
    p.set_defaults(func=_run)
