"""`batch` and `eval {rm, judge, align-acc, report}` subcommands (GitHub issue 4): a thin CLI over
`batch`, `evaluation` and `report`. Each handler returns an exit code; `PJudgeError`s are turned
into one line on stderr by `cli.main`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError


def _progress(label: str):
    """A tqdm bar on stderr, driven by (done, total) callbacks."""
    from tqdm import tqdm

    state = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=label, file=sys.stderr, dynamic_ncols=True)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _write_json(data: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _ci(d: dict, key: str = "mean") -> str:
    if d.get(key) is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d[key]:.4f}"
    return f"{d[key]:.4f}  [95% CI {d['low']:.4f}, {d['high']:.4f}]"


# --------------------------------------------------------------------------- batch

def _batch(args: argparse.Namespace) -> int:
    from .batch import parse_methods, read_prompts, run_batch
    from .cli import load_from_args
    from .sampling import SamplingConfig

    if args.preset:
        if args.pref_a or args.pref_b:
            raise InputError("Pass either --preset or --pref-a/--pref-b, not both.")
        from .presets import pair

        pref_a, pref_b = pair(args.preset)
    else:
        pref_a, pref_b = args.pref_a, args.pref_b
        if not pref_a.strip() or not pref_b.strip():
            raise InputError("Batch generation needs two preferences: pass --pref-a and --pref-b, or --preset NAME.")
    if args.lam < 1:
        raise InputError("--lam must be at least 1.")
    methods = parse_methods(args.methods)
    prompts = read_prompts(args.prompts)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError("--limit must be at least 1.")
        prompts = prompts[:args.limit]
    SamplingConfig(args.temperature, args.top_k, args.top_p, args.greedy)  # fail before a slow load
    lm = load_from_args(args)
    print(f"{len(prompts)} prompts x {len(methods)} methods on {lm.describe()}", file=sys.stderr)
    summary = run_batch(
        lm, prompts, pref_a, pref_b, args.out, methods=methods, resume=args.resume, overwrite=args.overwrite,
        lam=args.lam, trace=args.trace, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, seed=args.seed, progress=not args.quiet)
    print(f"wrote {summary['written']} records to {summary['out']} ({summary['skipped']} already there) "
          f"in {summary['seconds']:.1f} s", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- eval

def _rm(args: argparse.Namespace) -> int:
    from .evaluation import load_records, load_reward_model, score_rm

    records = load_records(args.inp)
    model, tok = load_reward_model(args.rm, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    result = score_rm(records, model, tok, rm_name=args.rm, dimension=args.dimension, batch_size=args.batch_size,
                      progress=None if args.quiet else _progress("reward"))
    _write_json(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "scores" or args.all}, indent=2))
        return 0
    print(f"{result['metric']}")
    for m, d in result["by_method"].items():
        print(f"  {m:<14} n={d['n']:<4} mean {_ci(d)}")
    if result.get("paired"):
        p = result["paired"]
        pv = f"{p['p_value']:.3g}" if p.get("p_value") is not None else "n/a"
        print(f"  paired {p['a']} - {p['b']} over {p['n']} prompts: {_ci(p)}  (p = {pv})")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from .evaluation import judge_win_rate, load_records
    from .loading import load_model

    records = load_records(args.inp)
    lm = load_model(args.judge, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    result = judge_win_rate(records, lm, args.aspect, method_a=args.method_a, method_b=args.method_b,
                            consistency=not args.no_consistency,
                            progress=None if args.quiet else _progress("judge"))
    _write_json(result, args.out)
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
    from .capacity import SHORT_PERSONA, find_pairs_file
    from .cli import load_from_args
    from .evaluation import alignment_accuracy, load_pairs

    path = find_pairs_file(args.pairs)
    pairs = load_pairs(path, limit=args.limit, seed=args.sample_seed)
    lm = load_from_args(args)
    result = alignment_accuracy(lm, pairs, batch_size=args.batch_size,
                                progress=None if args.quiet else _progress("sequences"))
    result = {"kind": "align-acc", "file": str(path), **result}
    _write_json(result, args.out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "per_pair" or args.all}, indent=2))
        return 0
    print(f"alignment accuracy of {result['model']} on {result['n']} pairs: {_ci(result, 'accuracy')}"
          f"  (wins {result['wins']}, ties {result['ties']}, losses {result['losses']}; ties count 1/2)")
    for persona, d in result["by_persona"].items():
        print(f"  {SHORT_PERSONA.get(persona, persona):<20} n={d['n']:<4} {_ci(d, 'accuracy')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    if not args.out_md and not args.out_html:
        raise InputError("Nothing to write: pass --out-md and/or --out-html.")
    result = write_report(args.inp, args.scores, out_md=args.out_md, out_html=args.out_html)
    print(result["markdown"])
    return 0


def add_subcommands(sub) -> None:
    from .cli import add_model_arguments, add_sampling_arguments

    b = sub.add_parser("batch", help="generate many prompts with several methods into a resumable JSONL file")
    b.add_argument("--prompts", required=True, help="JSON list [{id, prompt}], JSONL, or one prompt per line")
    b.add_argument("--pref-a", default="", help="preference A (drafts the first block)")
    b.add_argument("--pref-b", default="", help="preference B")
    b.add_argument("--preset", default=None, help="a ready-made preference pair (see presets/pairs.json)")
    b.add_argument("--methods", default="persona-judge,direct", help="comma-separated: persona-judge,direct")
    b.add_argument("--out", required=True, help="output JSONL, one record per (prompt id, method)")
    b.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    b.add_argument("--resume", action="store_true", help="skip the records already in --out")
    b.add_argument("--overwrite", action="store_true", help="start --out afresh")
    b.add_argument("--lam", type=int, default=4, help="tokens drafted per block (λ)")
    b.add_argument("--trace", action="store_true", help="keep the per-token trace ('steps') in each record")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(b)
    add_sampling_arguments(b)
    b.set_defaults(func=_batch, seed=0)

    ev = sub.add_parser("eval", help="evaluate batch outputs (reward model, pairwise judge), judge capacity, reports")
    evs = ev.add_subparsers(dest="eval_command", required=True)

    def common(p, device=True):
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--all", action="store_true", help="with --json: include per-item details")
        p.add_argument("--out", default=None, help="also write the full result as JSON (for `eval report --scores`)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if device:
            p.add_argument("--device", default="auto")
            p.add_argument("--dtype", default="auto")
            p.add_argument("--trust-remote-code", action="store_true")

    rm = evs.add_parser("rm", help="reward-model scores per method and the paired difference")
    rm.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    rm.add_argument("--rm", required=True, help="reward model: hub id or folder (AutoModelForSequenceClassification)")
    rm.add_argument("--dimension", type=int, default=None, help="which output to use when the RM returns several")
    rm.add_argument("--batch-size", type=int, default=4)
    common(rm)
    rm.set_defaults(func=_rm)

    jd = evs.add_parser("judge", help="pairwise win rate of persona-judge vs direct by a local LM judge")
    jd.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    jd.add_argument("--judge", required=True, help="judge causal LM: 'bundled', hub id, folder or .gguf")
    jd.add_argument("--aspect", required=True, help="what the judge compares, e.g. the preference texts")
    jd.add_argument("--method-a", default=None, help="default persona-judge")
    jd.add_argument("--method-b", default=None, help="default direct")
    jd.add_argument("--no-consistency", action="store_true",
                    help="take the averaged probabilities' verdict even when the two orders disagree")
    common(jd)
    jd.set_defaults(func=_judge)

    aa = evs.add_parser("align-acc", help="AlignX alignment accuracy of a model as an implicit judge")
    aa.add_argument("--pairs", default=None, help="pairs JSON (default: the student/PhD pairs next to the repo)")
    aa.add_argument("--limit", type=int, default=None, help="score this many pairs (a random sample with --sample-seed)")
    aa.add_argument("--sample-seed", type=int, default=0, help="seed of the random sample of --limit pairs (the file lists one persona first)")
    aa.add_argument("--batch-size", type=int, default=8)
    common(aa, device=False)
    add_model_arguments(aa)
    aa.set_defaults(func=_align_acc)

    rp = evs.add_parser("report", help="Markdown table and plotly HTML comparing the methods")
    rp.add_argument("--in", dest="inp", required=True, help="batch output JSONL")
    rp.add_argument("--scores", nargs="*", default=[], help="JSON files from eval rm/judge/align-acc --out")
    rp.add_argument("--out-md", default=None)
    rp.add_argument("--out-html", default=None)
    rp.set_defaults(func=_report)
