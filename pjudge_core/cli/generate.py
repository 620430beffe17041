"""`python -m pjudge_core generate`: one query, printed as it is decided (or the JSON trace)."""

from __future__ import annotations

import argparse
import json

from ..engine.methods import DEFAULT_METHOD
from ..engine.specs import RunSpec
from ..engine.trace import Holdback
from ..errors import InputError
from .args import (
    add_decode_arguments,
    add_model_arguments,
    add_preference_arguments,
    load_from_args,
    preferences_from_args,
    settings_from_args,
)


def run(args: argparse.Namespace) -> int:
    if not args.query.strip():
        raise InputError("The query is empty; pass --query 'your question'.")
    spec = RunSpec.parse(args.spec)
    preferences = preferences_from_args(args)
    settings = settings_from_args(args)
    spec.check(preferences, settings)  # fail before a slow load
    lm = load_from_args(args)
    stream = spec.stream(lm, args.query, preferences, settings)
    if args.json:
        result = stream.run().to_dict()
        print(json.dumps({"spec": spec.key, **result}, indent=2, ensure_ascii=False))
        return 0
    shown = Holdback(settings.stop)  # a stop string, or the start of one, waits for the final text
    for step in stream:  # print as tokens are decided
        print(shown.push(step.text), end="", flush=True)
    print(shown.finish(stream.result.text))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="answer one query with any method (a run spec)")
    p.add_argument("--query", required=True)
    p.add_argument("--spec", "--method", dest="spec", default=DEFAULT_METHOD,
                   help="a method or run spec: persona-judge, persona-judge-base, direct, direct[A], "
                        "fusion(alpha=0.5,weights=2:1), official ... (see README)")
    p.add_argument("--json", action="store_true", help="print the whole trace as JSON")
    add_preference_arguments(p)
    add_model_arguments(p)
    add_decode_arguments(p)
    p.set_defaults(func=run)
