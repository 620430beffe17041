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
"""

from __future__ import annotations

import statistics
import threading
import time

import psutil
import torch

from ..engine.methods import generate
from ..engine.prompting import prompt_ids
from ..engine.settings import DecodeSettings

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


def run_benchmark(lm, *, short: int = 128, long: int = 512, repeats: int = 3, lam: int = 4,
                  progress=lambda message: None) -> dict:
    device = str(lm.model.device)
    settings = DecodeSettings(lam=lam)  # the library defaults: the paper's sampling settings
    combined = prompt_ids(lm.tokenizer, QUERY, PREFS)
    input_ids = torch.tensor([combined], device=lm.model.device)

    def generate_hf(n):
        with torch.no_grad():
            return lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                     max_new_tokens=n, min_new_tokens=n, pad_token_id=lm.tokenizer.eos_token_id,
                                     temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)

    def ours(method, n):
        return lambda seed: generate(lm, method, QUERY, PREFS, settings.replace(max_new_tokens=n, seed=seed),
                                     ignore_eos=True)

    runs = {
        "generate": lambda seed: generate_hf(short),
        "direct": ours("direct", short),
        "persona_judge": ours("persona-judge", short),
        "fusion": ours("fusion", short),
        "persona_judge_long": ours("persona-judge", long),
        "direct_long": ours("direct", long),
    }
    tokens = {"generate": short, "direct": short, "persona_judge": short, "fusion": short,
              "persona_judge_long": long, "direct_long": long}
    per_token = {name: [] for name in runs}
    peak = {name: 0 for name in runs}
    acceptance = []
    progress("warm-up")
    runs["generate"](0)
    runs["persona_judge"](0)
    for r in range(repeats):
        for name, fn in runs.items():
            progress(f"repeat {r + 1}/{repeats}: {name} ({tokens[name]} tokens)")
            torch.manual_seed(r)
            seconds, memory, out = _timed(lambda: fn(r), device)
            per_token[name].append(seconds / tokens[name])
            peak[name] = max(peak[name], memory.peak)
            if name.startswith("persona_judge"):
                acceptance.append(out.stats["acceptance_rate"])
    median = {name: statistics.median(values) for name, values in per_token.items()}
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
        "mean_acceptance_rate": statistics.mean(acceptance),
        "ratios": {
            "persona_judge / generate (per token, short)": median["persona_judge"] / median["generate"],
            "direct (ours) / generate (per token, short)": median["direct"] / median["generate"],
            "persona_judge long / short (per token)": median["persona_judge_long"] / median["persona_judge"],
            "persona_judge / direct peak memory (long)": peak["persona_judge_long"] / peak["direct_long"],
            "fusion (2 personas, α=0) / direct (ours) (per token, short)": median["fusion"] / median["direct"],
        },
    }


def format_report(report: dict) -> str:
    lines = [
        f"model {report['model']} on {report['device']} ({report['threads']} threads), λ={report['lam']}, "
        f"median of {report['repeats']} interleaved repeats",
        "",
        "per-token time (ms):",
    ]
    lines += [f"  {name:<20} {ms:8.1f}" for name, ms in report["per_token_ms"].items()]
    lines += ["", "peak memory (MiB):"]
    lines += [f"  {name:<20} {mb:8.1f}" for name, mb in report["peak_memory_mb"].items()]
    lines += ["", f"mean acceptance rate of the persona-judge runs: {report['mean_acceptance_rate']:.3f}", "", "ratios:"]
    lines += [f"  {name:<46} {value:6.3f}" for name, value in report["ratios"].items()]
    return "\n".join(lines)
