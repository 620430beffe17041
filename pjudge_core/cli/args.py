"""Arguments shared by the subcommands, and turning them into library objects.

Decoding flags default to None, so `DecodeSettings.from_inputs` fills in the library's defaults:
a default is written once, in `DecodeSettings`, and the help text reads it from there.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from tqdm import tqdm

from ..engine.loading import BUNDLED, QUANTIZE_CHOICES, load_model
from ..engine.settings import DecodeSettings
from ..errors import InputError
from ..evaluation.runs.records import read_prompts
from ..presets import model_preset, pair, persona_text

DEFAULTS = {f.name: f.default for f in fields(DecodeSettings)}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=BUNDLED,
                        help="'bundled' (offline SmolLM2-135M-Instruct), a hub id, a folder or a .gguf file")
    parser.add_argument("--quantize", choices=[q for q in QUANTIZE_CHOICES if q], default=None,
                        help="bitsandbytes quantization")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model repository's own code to run")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size and --no-share of the teacher-forcing scorers (`evaluation.logprobs`)."""
    parser.add_argument("--batch-size", type=int, default=None,
                        help="prefix-tree nodes per forward (default 64), or with --no-share whole sequences "
                             "per forward (default 8)")
    parser.add_argument("--no-share", action="store_true",
                        help="score every sequence whole in flat batches instead of feeding each prompt once for "
                             "all the responses under it (slower; the same numbers)")


def add_decode_arguments(parser: argparse.ArgumentParser, *, seed: int | None = None,
                         max_new_tokens: int | None = None) -> None:
    """One flag per `DecodeSettings` field. `seed` overrides the library's default (batch runs use 0),
    `max_new_tokens` the token budget's (the ablation's is longer)."""
    d = DEFAULTS
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                        help=f"(default {max_new_tokens or d['max_new_tokens']})")
    parser.add_argument("--lam", type=int, help=f"tokens drafted per block, λ (default {d['lam']})")
    parser.add_argument("--fixed-roles", dest="alternate", action="store_const", const=False,
                        help="A always drafts, B always judges (Persona-judge-Base)")
    parser.add_argument("--greedy", action="store_const", const=True, help="deterministic decoding (see README)")
    parser.add_argument("--temperature", type=float, help=f"(default {d['temperature']})")
    parser.add_argument("--top-k", type=int, help=f"0 turns top-k off (default {d['top_k']})")
    parser.add_argument("--top-p", type=float, help=f"1.0 turns top-p off (default {d['top_p']})")
    parser.add_argument("--repetition-penalty", type=float,
                        help=f"on the generated output only; 1.0 is off (default {d['repetition_penalty']})")
    parser.add_argument("--no-repeat-ngram-size", type=int,
                        help=f"ban repeating any n-gram of the output; 0 is off (default {d['no_repeat_ngram_size']})")
    parser.add_argument("--reproducible", action="store_const", const=True,
                        help="decode each request in forwards of its own, so its tokens never depend on the requests "
                             "decoded beside it (slower when many decode together)")
    parser.add_argument("--stop", action="append", metavar="TEXT",
                        help="end the answer before the first occurrence of this text; repeatable")
    parser.add_argument("--seed", type=int, default=seed,
                        help=f"(default {'random' if seed is None else seed})")


def settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    return DecodeSettings.from_inputs(**{name: getattr(args, name, None) for name in DEFAULTS})


def model_settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    """The decoding flags given, else the model preset's recommended settings (the bundled model's
    repetition penalty 1.1), else the library defaults."""
    preset = model_preset(args.model)
    values = dict(preset.settings) if preset else {}
    values.update({name: getattr(args, name) for name in DEFAULTS if getattr(args, name, None) is not None})
    return DecodeSettings.from_inputs(**values)


def add_preference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pref", action="append", default=[], metavar="TEXT",
                        help="a preference text; repeat for personas A, B, C, D in order")
    parser.add_argument("--pref-a", default=None, help="preference A (drafts the first block)")
    parser.add_argument("--pref-b", default=None, help="preference B (judges the first block)")
    parser.add_argument("--persona", action="append", default=[], metavar="NAME",
                        help="a persona preset by name (presets/personas.json); repeatable")
    parser.add_argument("--preset", default=None, help="a ready-made preference pair (presets/pairs.json)")


def preferences_from_args(args: argparse.Namespace) -> list[str]:
    """The preference texts, in order: --pref-a/--pref-b, then --pref, then --persona presets, or --preset."""
    texts = [t for t in (args.pref_a, args.pref_b) if t is not None and t.strip()] + list(args.pref)
    texts += [persona_text(name) for name in args.persona]
    if args.preset:
        if texts:
            raise InputError("Pass either --preset or preference texts (--pref-a/--pref-b/--pref/--persona), not both.")
        texts = list(pair(args.preset))
    if any(not t.strip() for t in texts):
        raise InputError("A preference passed with --pref is empty.")
    return texts


def load_from_args(args: argparse.Namespace):
    return load_model(args.model, quantize=args.quantize, device=args.device, dtype=args.dtype,
                      trust_remote_code=args.trust_remote_code)


def load_other(name: str | None, args: argparse.Namespace):
    """A second model the command names (a judge, a fit model), or None when it names none."""
    return load_model(name, trust_remote_code=args.trust_remote_code) if name else None


def prompts_from_args(args: argparse.Namespace) -> list[dict]:
    """The prompts of --prompts, the first --limit of them when it is given."""
    prompts = read_prompts(args.prompts)
    if args.limit is None:
        return prompts
    if args.limit < 1:
        raise InputError("--limit must be at least 1.")
    return prompts[:args.limit]


def progress_bar(label: str):
    """A tqdm bar on stderr, driven by (done, total) callbacks."""
    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=label, file=sys.stderr, dynamic_ncols=True)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
