"""`python -m pjudge_core eval sensitivity`: does a model follow each persona at all, against a placebo?

Writes no-preference answers to the prompts (one per prompt and seed), scores the mean per-token
KL(persona ‖ no preference) along them under each persona and under the placebo, and prints per
persona the KL, its excess over the placebo with a 95% interval, and whether the model follows it
(`evaluation.self_judge.sensitivity`). ``--meters`` also writes each persona's own answers and
gives each meter's paired shift against no preference and against the placebo.
"""

from __future__ import annotations

import argparse
import json

from ..engine.requests import check_rows
from ..errors import InputError
from ..evaluation.meters import METERS
from ..evaluation.runs.records import read_prompts
from ..evaluation.self_judge.sensitivity import PLACEBO, sensitivity, verdict
from ..paths import DATA
from ..presets import persona_text, presets
from .args import add_decode_arguments, add_model_arguments, load_from_args, progress_bar, settings_from_args
from .output import interval, write_json

DEFAULT_PROMPTS = DATA / "koala_eval_50.json"


def _personas(args) -> dict[str, str]:
    """{name: text}: every preset (--all-presets), --persona presets, --pref texts (named by their start)."""
    personas = {name: p.text for name, p in presets().personas.items()} if args.all_presets else {}
    personas.update({name: persona_text(name) for name in args.persona})
    personas.update({text[:40]: text for text in args.pref})
    if not personas:
        raise InputError("Name the personas: --persona NAME (a preset), --pref TEXT, or --all-presets.")
    return personas


def _run(args: argparse.Namespace) -> int:
    personas = _personas(args)
    prompts = read_prompts(args.prompts)[:args.limit] if args.limit else read_prompts(args.prompts)
    settings = settings_from_args(args)
    rows = check_rows(args.rows)
    lm = load_from_args(args)
    bars = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, progress_bar(stage))(done, total)

    result = sensitivity(lm, [p["prompt"] for p in prompts], personas, placebo=args.placebo, settings=settings,
                         seeds=list(range(args.seed or 0, (args.seed or 0) + args.seeds)), meters=args.meters,
                         rows=rows, progress=progress)
    result["prompts"] = {"file": str(args.prompts), "n": len(prompts)}
    write_json(result, args.out)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    print(f"{lm.name}: {result['n']} answers with no preference ({len(prompts)} prompts × {args.seeds} seeds; "
          f"{result['cut']} cut by the {settings.max_new_tokens}-token budget); mean per-token KL(persona ‖ none), "
          f"nats; placebo {interval(result['placebo_kl'])}")
    width = max(map(len, personas))
    for name, entry in sorted(result["personas"].items(), key=lambda kv: -(kv[1]["vs_placebo"]["mean"] or 0)):
        mark = "follows" if entry["followed"] else "NOT followed"
        print(f"  {name:<{width}}  KL {interval(entry['kl'])}  beyond the placebo {interval(entry['vs_placebo'])}"
              f"  {mark}")
        for meter, shift in (entry.get("meters") or {}).items():
            print(f"  {'':<{width}}    {meter:<20} vs none {interval(shift['vs_none'])}  vs placebo "
                  f"{interval(shift['vs_placebo'])}")
    not_followed = [n for n, e in result["personas"].items() if not e["followed"]]
    if not_followed:
        name = not_followed[0]
        print(verdict(name, result["personas"][name], lm.name, result["placebo_kl"]["mean"]))
    return 0


def add_eval_parsers(evs) -> None:
    p = evs.add_parser("sensitivity", help="does the model follow each persona at all? KL against a placebo "
                                           "(and, with --meters, meter shifts)")
    p.add_argument("--persona", action="append", default=[], metavar="NAME", help="a persona preset; repeatable")
    p.add_argument("--pref", action="append", default=[], metavar="TEXT", help="a preference text; repeatable")
    p.add_argument("--all-presets", action="store_true", help="every persona preset")
    p.add_argument("--placebo", default=PLACEBO, help=f"the preference that asks for nothing (default: {PLACEBO!r})")
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="prompt file (default: the 50 koala prompts)")
    p.add_argument("--limit", type=int, default=20, help="the first N prompts (default 20; 0: all)")
    p.add_argument("--seeds", type=int, default=1, help="answers per prompt, seeds from --seed on (default 1)")
    p.add_argument("--meters", action="store_true",
                   help=f"also write each persona's own answers and give the paired shift of {', '.join(METERS)}")
    p.add_argument("--rows", type=int, default=16, help="answers decoding together (default 16)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", default=None, help="also write the result as JSON")
    add_model_arguments(p)
    add_decode_arguments(p, seed=0)
    p.set_defaults(func=_run)
