"""`python -m pjudge_core`: a thin command line over the library.

Subcommands: ``generate`` (one query, text or the JSON trace) and ``bench`` (speed and memory
ratios against transformers' generate()). Each subparser sets ``func(args) -> int``. User errors
(`PJudgeError`) become one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import PJudgeError
from .loading import BUNDLED

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=BUNDLED, help="'bundled' (offline SmolLM2-135M-Instruct), a hub id, a folder or a .gguf file")
    parser.add_argument("--quantize", choices=["4bit", "8bit"], default=None, help="bitsandbytes quantization (needs CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model repository's own code to run")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--greedy", action="store_true", help="deterministic decoding (see README)")
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-k", type=int, default=20, help="0 turns top-k off")
    parser.add_argument("--top-p", type=float, default=0.9, help="1.0 turns top-p off")
    parser.add_argument("--seed", type=int, default=None)


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, greedy=args.greedy, seed=args.seed,
    )


def load_from_args(args: argparse.Namespace):
    from .loading import load_model

    return load_model(args.model, quantize=args.quantize, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)


def _generate(args: argparse.Namespace) -> int:
    from .decoding import stream_direct, stream_persona_judge
    from .errors import InputError
    from .sampling import SamplingConfig

    if not args.query.strip():
        raise InputError("The query is empty; pass --query 'your question'.")
    if args.method == "persona-judge" and (not args.pref_a.strip() or not args.pref_b.strip()):
        raise InputError("Persona-judge needs two preferences: pass --pref-a and --pref-b.")
    if args.lam < 1:
        raise InputError("--lam must be at least 1.")
    SamplingConfig(args.temperature, args.top_k, args.top_p, args.greedy)  # fail before a slow load
    lm = load_from_args(args)
    if args.method == "persona-judge":
        stream = stream_persona_judge(lm, args.query, args.pref_a, args.pref_b, lam=args.lam,
                                      alternate=not args.fixed_roles, **sampling_kwargs(args))
    else:
        prefs = [p for p in (args.pref_a, args.pref_b) if p.strip()]
        stream = stream_direct(lm, args.query, prefs, **sampling_kwargs(args))
    if args.json:
        print(json.dumps(stream.run().to_dict(), indent=2, ensure_ascii=False))
        return 0
    for step in stream:  # print as tokens are decided
        print(step.text, end="", flush=True)
    print()
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import format_report, run_benchmark

    lm = load_from_args(args)
    report = run_benchmark(lm, short=args.tokens, long=args.long_tokens, repeats=args.repeats,
                           lam=args.lam, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pjudge_core", description="Persona-judge: one model, two preferences, decoding-time alignment.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="answer one query with Persona-judge or direct prompting")
    gen.add_argument("--query", required=True)
    gen.add_argument("--pref-a", default="", help="preference A (drafts the first block)")
    gen.add_argument("--pref-b", default="", help="preference B (judges the first block)")
    gen.add_argument("--method", choices=["persona-judge", "direct"], default="persona-judge")
    gen.add_argument("--lam", type=int, default=4, help="tokens drafted per block (λ)")
    gen.add_argument("--fixed-roles", action="store_true", help="A always drafts, B always judges (Persona-judge-Base)")
    gen.add_argument("--json", action="store_true", help="print the whole trace as JSON")
    add_model_arguments(gen)
    add_sampling_arguments(gen)
    gen.set_defaults(func=_generate)

    bench = sub.add_parser("bench", help="per-token time and peak memory against transformers' generate()")
    bench.add_argument("--tokens", type=int, default=128)
    bench.add_argument("--long-tokens", type=int, default=512)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--lam", type=int, default=4)
    bench.add_argument("--json", action="store_true")
    add_model_arguments(bench)
    bench.set_defaults(func=_bench)

    from .eval_cli import add_subcommands
    add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PJudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
