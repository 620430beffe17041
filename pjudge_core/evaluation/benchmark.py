"""Speed and memory of Persona-judge against transformers' own generate(), in one process.

Machines are noisy, so the benchmark reports ratios of runs interleaved in the same process
(median over repeats), never absolute timing thresholds. Every run is forced to its full length
(`min_new_tokens` for generate, `ignore_eos` for ours) so per-token times compare like for like.

  * baseline: ``model.generate`` with one prompt holding both preferences (direct prompting),
    the paper's sampling settings;
  * ours/direct: our own decoder on that same prompt;
  * persona-judge at `short` and at `long` new tokens;
  * fusion of the two preferences (α = 0) at `short` new tokens.
Peak memory is the process's peak resident set (CPU, sampled every 2 ms) or
``torch.cuda.max_memory_allocated`` (CUDA) during the run.

`run_batched_benchmark` measures the batched engine (`engine.Engine`), every run forced to its full
length: N Persona-judge requests decoded together against the same N each decoded alone (batch of
one), the lab's four panels (Persona-judge, direct, A alone, fusion) together against the same
four interleaved one row at a time (what the lab did before the engine), and tokens/s for 1, 2,
4, ... requests together.

`run_scoring_benchmark` times alignment accuracy on the same pairs with the shared-prefix scorer
and with flat batches (``share=False``), interleaved in one process: pairs per second, their
ratio, and what explains it (forwards, positions fed with their padding, real tokens), plus the
largest difference between the two runs' rewards (float32 rounding, nothing more).
"""

from __future__ import annotations

import statistics
import threading
import time

import psutil
import torch

from ..engine.api import generate, stream_job
from ..engine.prompting import prompt_ids
from ..engine.requests import Request, generate_many
from ..engine.settings import DecodeSettings
from .alignment import alignment_accuracy

QUERY = "Write a short story about a lighthouse keeper who finds a message in a bottle."
PREF_A = "Generate a response that is richly descriptive and vivid."
PREF_B = "Generate a response that is imaginative and creative."
PREFS = [PREF_A, PREF_B]


class PeakMemory:
    """Peak memory in bytes while the `with` block runs."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self.before = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return self
        self._process = psutil.Process()
        self.before = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._process.memory_info().rss)


def _timed(fn, device: str) -> tuple[float, PeakMemory, object]:
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, memory, out


def interleaved(runs: dict, tokens: dict, repeats: int, device: str, progress,
                unit: str = "tokens") -> tuple[dict, dict, dict]:
    """Run every `runs[name](seed)` once per repeat, in turn; median seconds per token (per `unit`:
    `tokens[name]` counts them), peak memory (bytes) and the last output of each run."""
    per_token = {name: [] for name in runs}
    peak = {name: 0 for name in runs}
    outputs = {}
    for r in range(repeats):
        for name, fn in runs.items():
            progress(f"repeat {r + 1}/{repeats}: {name} ({tokens[name]} {unit})")
            torch.manual_seed(r)
            seconds, memory, outputs[name] = _timed(lambda: fn(r), device)
            per_token[name].append(seconds / tokens[name])
            peak[name] = max(peak[name], memory.peak)
    return {name: statistics.median(v) for name, v in per_token.items()}, peak, outputs


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


def _pj_requests(n: int, tokens: int, seed: int) -> list[Request]:
    settings = DecodeSettings(max_new_tokens=tokens)  # the library defaults otherwise
    return [Request("persona-judge", QUERY, PREFS, settings.replace(seed=seed + i), ignore_eos=True) for i in range(n)]


LAB_PANELS = ("persona-judge", "direct", "direct[A]", "fusion")


def _lab_requests(tokens: int, seed: int) -> list[Request]:
    settings = DecodeSettings(max_new_tokens=tokens, seed=seed)
    return [Request(spec, QUERY, PREFS, settings, ignore_eos=True) for spec in LAB_PANELS]


def one_row_at_a_time(lm, requests: list[Request]) -> list:
    """Each request decoded alone (a batch of one), their steps interleaved: the panel with the
    fewest tokens goes next, as the lab did before the batched engine."""
    streams = [stream_job(lm, request.job(lm)) for request in requests]
    counts = [0] * len(streams)
    running = set(range(len(streams)))
    while running:
        i = min(running, key=lambda k: counts[k])
        try:
            next(streams[i])
            counts[i] += 1
        except StopIteration:
            running.discard(i)
    return [s.result for s in streams]


def run_batched_benchmark(lm, *, tokens: int = 128, repeats: int = 2, together: tuple[int, ...] = (8, 16),
                          sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32), progress=lambda message: None) -> dict:
    """Throughput of the batched engine against one request at a time, in one process, interleaved;
    medians over `repeats` (see the module docstring)."""
    runs, counts = {}, {}
    for n in together:
        runs[f"{n} persona-judge together"] = lambda r, n=n: generate_many(lm, _pj_requests(n, tokens, 100 * r), rows=n)
        runs[f"{n} persona-judge one by one"] = lambda r, n=n: [generate_many(lm, [q], rows=1)[0]
                                                                 for q in _pj_requests(n, tokens, 100 * r)]
        counts[f"{n} persona-judge together"] = counts[f"{n} persona-judge one by one"] = n * tokens
    runs["lab 4 panels together"] = lambda r: generate_many(lm, _lab_requests(tokens, r), rows=len(LAB_PANELS))
    runs["lab 4 panels one row at a time"] = lambda r: one_row_at_a_time(lm, _lab_requests(tokens, r))
    counts["lab 4 panels together"] = counts["lab 4 panels one row at a time"] = len(LAB_PANELS) * tokens
    for n in sizes:
        if f"{n} persona-judge together" not in runs:
            runs[f"{n} persona-judge together"] = lambda r, n=n: generate_many(lm, _pj_requests(n, tokens, 100 * r),
                                                                               rows=n)
            counts[f"{n} persona-judge together"] = n * tokens
    progress("warm-up")
    generate_many(lm, _pj_requests(2, 8, 0), rows=2)
    median, peak, _ = interleaved(runs, counts, repeats, str(lm.model.device), progress)
    ratios = {f"{n} persona-judge: together / one by one (throughput)":
              median[f"{n} persona-judge one by one"] / median[f"{n} persona-judge together"] for n in together}
    ratios["lab 4 panels: together / one row at a time (time)"] = \
        median["lab 4 panels together"] / median["lab 4 panels one row at a time"]
    return {
        "model": lm.name, "device": str(lm.model.device), "threads": torch.get_num_threads(), "tokens": tokens,
        "repeats": repeats,
        "per_token_ms": {name: 1000 * value for name, value in median.items()},
        "tokens_per_s": {n: 1 / median[f"{n} persona-judge together"] for n in sizes},
        "peak_memory_mb": {name: value / 2**20 for name, value in peak.items()},
        "ratios": ratios,
    }


def format_batched_report(report: dict) -> str:
    lines = [f"batched engine: {report['model']} on {report['device']} ({report['threads']} threads), "
             f"{report['tokens']} tokens per request (forced), median of {report['repeats']} interleaved repeats", "",
             "per-token time (ms, all requests' tokens):"]
    lines += [f"  {name:<36} {ms:8.2f}" for name, ms in report["per_token_ms"].items()]
    lines += ["", "Persona-judge requests decoded together:", "  | requests | tokens/s | vs one |", "  |---|---|---|"]
    one = report["tokens_per_s"].get(1) or next(iter(report["tokens_per_s"].values()))
    lines += [f"  | {n} | {rate:.1f} | {rate / one:.2f}x |" for n, rate in report["tokens_per_s"].items()]
    lines += ["", "ratios:"] + [f"  {name:<58} {value:6.3f}" for name, value in report["ratios"].items()]
    return "\n".join(lines)


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


class ForwardCounter:
    """Forwards, positions fed (padding included) and real tokens fed to `lm`'s decoder, per `label`."""

    def __init__(self, lm):
        self.lm, self.label, self.counts = lm, None, {}

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        rows, width = ids.shape
        real = int(mask[:, -width:].sum()) if mask is not None else rows * width
        counts = self.counts.setdefault(self.label, {"forwards": 0, "positions": 0, "tokens": 0})
        counts["forwards"] += 1
        counts["positions"] += rows * width
        counts["tokens"] += real

    def __enter__(self):
        self.hook = self.lm.model.get_decoder().register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.hook.remove()


def run_scoring_benchmark(lm, pairs: list[dict], *, repeats: int = 3, batch_size: int | None = None,
                          flat_batch_size: int | None = None, progress=lambda message: None) -> dict:
    """Alignment accuracy of `pairs` with the prefix-tree scorer ("shared") and with flat batches
    ("flat"), interleaved in one process after a warm-up; medians over `repeats`."""
    runs = {
        "shared": lambda seed: alignment_accuracy(lm, pairs, share=True, batch_size=batch_size),
        "flat": lambda seed: alignment_accuracy(lm, pairs, share=False, batch_size=flat_batch_size),
    }
    progress("warm-up")
    for name in runs:
        alignment_accuracy(lm, pairs[:2], share=name == "shared")
    counter = ForwardCounter(lm)

    def counted(name):
        def run(seed):
            counter.label = name  # what the decoder's forwards are counted under
            return runs[name](seed)
        return run

    with counter:
        median, peak, outputs = interleaved({name: counted(name) for name in runs}, dict.fromkeys(runs, len(pairs)),
                                            repeats, str(lm.model.device), progress, unit="pairs")
    per_run = {name: {k: v // repeats for k, v in counter.counts[name].items()} for name in runs}
    shared, flat = outputs["shared"]["per_pair"], outputs["flat"]["per_pair"]
    return {
        "model": lm.name,
        "device": str(lm.model.device),
        "threads": torch.get_num_threads(),
        "pairs": len(pairs),
        "repeats": repeats,
        "pairs_per_second": {name: 1 / value for name, value in median.items()},
        "seconds": {name: value * len(pairs) for name, value in median.items()},
        "per_run": per_run,
        "peak_memory_mb": {name: value / 2**20 for name, value in peak.items()},
        "max_reward_difference": max(abs(a[k] - b[k]) for a, b in zip(shared, flat) for k in ("r_chosen", "r_rejected")),
        "same_outcomes": [a["outcome"] for a in shared] == [b["outcome"] for b in flat],
        "ratios": {
            "pairs/s shared / flat": median["flat"] / median["shared"],
            "positions fed flat / shared": per_run["flat"]["positions"] / per_run["shared"]["positions"],
            "tokens fed flat / shared": per_run["flat"]["tokens"] / per_run["shared"]["tokens"],
        },
    }


def format_scoring_report(report: dict) -> str:
    lines = [f"alignment accuracy of {report['model']} on {report['device']} ({report['threads']} threads), "
             f"{report['pairs']} pairs, median of {report['repeats']} interleaved repeats", ""]
    lines.append(f"  {'':<8} {'pairs/s':>8} {'seconds':>8} {'forwards':>9} {'positions':>10} {'tokens':>8} "
                 f"{'peak MiB':>9}")
    for name, rate in report["pairs_per_second"].items():
        run = report["per_run"][name]
        lines.append(f"  {name:<8} {rate:8.3f} {report['seconds'][name]:8.1f} {run['forwards']:9d} "
                     f"{run['positions']:10d} {run['tokens']:8d} {report['peak_memory_mb'][name]:9.1f}")
    lines += ["", "(positions: fed to the model, padding included; tokens: without the padding)", "", "ratios:"]
    lines += [f"  {name:<32} {value:6.3f}" for name, value in report["ratios"].items()]
    lines += ["", f"largest reward difference shared - flat: {report['max_reward_difference']:.2e} nats"
              f" (same outcomes: {'yes' if report['same_outcomes'] else 'no'})"]
    return "\n".join(lines)


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
