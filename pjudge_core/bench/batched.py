"""The batched engine against one request at a time, in one process (`bench-batch`).

Every run is forced to its full length: N Persona-judge requests decoded together against the same N
each decoded alone (batch of one), the lab's four panels (Persona-judge, direct, A alone, fusion)
together against the same four interleaved one row at a time (what the lab did before the engine),
and tokens/s for 1, 2, 4, ... requests together.
"""

from __future__ import annotations

import torch

from ..engine.api import stream_job
from ..engine.requests import Request, generate_many
from ..engine.settings import DecodeSettings
from .decoding import PREFS, QUERY
from .measure import interleaved


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
