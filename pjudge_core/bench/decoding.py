"""Speed and memory of Persona-judge against transformers' own generate(), in one process (`bench`).

Every run is forced to its full length (`min_new_tokens` for generate, `ignore_eos` for ours) so
per-token times compare like for like:
  * baseline: ``model.generate`` with one prompt holding both preferences (direct prompting),
    the paper's sampling settings;
  * ours/direct: our own decoder on that same prompt;
  * persona-judge at `short` and at `long` new tokens;
  * fusion of the two preferences (α = 0) at `short` new tokens.
`run_quantization_benchmark` times the same model loaded two ways (e.g. float32 and 4-bit).
"""

from __future__ import annotations

import torch

from ..engine.api import generate
from ..engine.prompting import prompt_ids
from ..engine.settings import DecodeSettings
from .measure import interleaved

QUERY = "Write a short story about a lighthouse keeper who finds a message in a bottle."

PREF_A = "Generate a response that is richly descriptive and vivid."

PREF_B = "Generate a response that is imaginative and creative."

PREFS = [PREF_A, PREF_B]


def _hf_generate(lm, n: int, settings: DecodeSettings):
    """transformers' own generate() on one prompt holding both preferences, forced to n tokens."""
    input_ids = torch.tensor([prompt_ids(lm.tokenizer, QUERY, PREFS)], device=lm.model.device)
    with torch.no_grad():
        return lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=lm.tokenizer.eos_token_id,
                                 temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)


def _ours(lm, method: str, n: int, settings: DecodeSettings):
    return lambda seed: generate(lm, method, QUERY, PREFS, settings.replace(max_new_tokens=n, seed=seed),
                                 ignore_eos=True)


def run_benchmark(lm, *, short: int = 128, long: int = 512, repeats: int = 3, lam: int = 4,
                  progress=lambda message: None) -> dict:
    device = str(lm.model.device)
    settings = DecodeSettings(lam=lam)  # the library defaults: the paper's sampling settings
    runs = {
        "generate": lambda seed: _hf_generate(lm, short, settings),
        "direct": _ours(lm, "direct", short, settings),
        "persona_judge": _ours(lm, "persona-judge", short, settings),
        "fusion": _ours(lm, "fusion", short, settings),
        "persona_judge_long": _ours(lm, "persona-judge", long, settings),
        "direct_long": _ours(lm, "direct", long, settings),
    }
    tokens = {"generate": short, "direct": short, "persona_judge": short, "fusion": short,
              "persona_judge_long": long, "direct_long": long}
    progress("warm-up")
    runs["generate"](0)
    runs["persona_judge"](0)
    median, peak, outputs = interleaved(runs, tokens, repeats, device, progress)
    return {
        "model": lm.name,
        "device": device,
        "threads": torch.get_num_threads(),
        "short_tokens": short,
        "long_tokens": long,
        "lam": lam,
        "repeats": repeats,
        "per_token_ms": {name: 1000 * value for name, value in median.items()},
        "peak_memory_mb": {name: value / 2**20 for name, value in peak.items()},
        "acceptance_rate": outputs["persona_judge"].stats["acceptance_rate"],
        "ratios": {
            "persona_judge / generate (per token, short)": median["persona_judge"] / median["generate"],
            "direct (ours) / generate (per token, short)": median["direct"] / median["generate"],
            "persona_judge long / short (per token)": median["persona_judge_long"] / median["persona_judge"],
            "persona_judge / direct peak memory (long)": peak["persona_judge_long"] / peak["direct_long"],
            "fusion (2 personas, α=0) / direct (ours) (per token, short)": median["fusion"] / median["direct"],
        },
    }


def run_quantization_benchmark(models: dict, *, tokens: int = 128, repeats: int = 3, lam: int = 4,
                               progress=lambda message: None) -> dict:
    """The same model loaded two ways (e.g. {"float32": lm, "4bit": lm4}), interleaved in one
    process: per-token time of generate(), direct prompting and Persona-judge, and the memory of the
    weights (`get_memory_footprint`; both models are resident, so process peaks would mix them)."""
    settings = DecodeSettings(lam=lam)
    runs, sizes = {}, {}
    for label, lm in models.items():
        runs[f"generate {label}"] = lambda seed, lm=lm: _hf_generate(lm, tokens, settings)
        runs[f"direct {label}"] = _ours(lm, "direct", tokens, settings)
        runs[f"persona_judge {label}"] = _ours(lm, "persona-judge", tokens, settings)
        sizes[label] = lm.model.get_memory_footprint()
    progress("warm-up")
    for fn in runs.values():
        fn(0)
    first = next(iter(models.values()))
    median, _, _ = interleaved(runs, {name: tokens for name in runs}, repeats, str(first.model.device), progress)
    base, other = list(models)[:2]
    return {
        "model": first.name,
        "device": str(first.model.device),
        "threads": torch.get_num_threads(),
        "tokens": tokens,
        "repeats": repeats,
        "per_token_ms": {name: 1000 * value for name, value in median.items()},
        "weights_mb": {label: size / 2**20 for label, size in sizes.items()},
        "ratios": {
            **{f"{kind} {other} / {base} (per token)": median[f"{kind} {other}"] / median[f"{kind} {base}"]
               for kind in ("generate", "direct", "persona_judge")},
            f"weights {other} / {base}": sizes[other] / sizes[base],
        },
    }


def format_report(report: dict) -> str:
    title = (f"model {report['model']} on {report['device']} ({report['threads']} threads), "
             f"median of {report['repeats']} interleaved repeats")
    lines = [title, "", "per-token time (ms):"]
    lines += [f"  {name:<24} {ms:8.1f}" for name, ms in report["per_token_ms"].items()]
    memory = report.get("peak_memory_mb") or report.get("weights_mb")
    lines += ["", "peak memory (MiB):" if "peak_memory_mb" in report else "weights (MiB):"]
    lines += [f"  {name:<24} {mb:8.1f}" for name, mb in memory.items()]
    if report.get("acceptance_rate") is not None:
        lines += ["", f"acceptance rate of the last Persona-judge run: {report['acceptance_rate']:.3f}"]
    lines += ["", "ratios:"]
    lines += [f"  {name:<58} {value:6.3f}" for name, value in report["ratios"].items()]
    return "\n".join(lines)
