"""Measuring in one process: runs interleaved and their medians, peak memory, forwards counted.

Machines are noisy, so every benchmark here reports ratios of runs interleaved in the same process
(median over repeats), never absolute timing thresholds. Peak memory is the process's peak resident
set (CPU, sampled every 2 ms) or ``torch.cuda.max_memory_allocated`` (CUDA) during a run.
"""

from __future__ import annotations

import statistics
import threading
import time

import psutil
import torch


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
