"""Alignment accuracy with the shared-prefix scorer against flat batches, in one process (`bench-scoring`).

The same pairs with the prefix-tree scorer and with flat batches (``share=False``), interleaved:
pairs per second, their ratio, and what explains it (forwards, positions fed with their padding,
real tokens), plus the largest difference between the two runs' rewards (float32 rounding,
nothing more).
"""

from __future__ import annotations

import torch

from ..evaluation.self_judge.alignment import alignment_accuracy
from .measure import ForwardCounter, interleaved


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
