"""The evidence that the meters measure what the personas ask for (`eval meters --validate`).

`validate_pairs(pairs)` asks, on preference pairs labelled with a persona that has a meter (the
P-Soups student/PhD pairs), how often the meter ranks the chosen answer above the rejected one in
the persona's direction (ties count ½). `sentiment_agreement(path)` correlates VADER with human
sentiment ratings in the format of VADER's own evaluation data (``id <tab> mean rating <tab>
text``, Hutto & Gilbert 2014).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import InputError
from ..stats import wilson
from . import METERS, measure, target_of


def validate_pairs(pairs: Sequence[Mapping]) -> dict:
    """How often each persona's meter ranks the chosen answer above the rejected one.

    `pairs` are {prompt, chosen, rejected, ground_truth_persona}; a pair counts for the meter of
    its ground-truth persona (matched to a persona preset by exact text), a win when the meter
    moves from rejected to chosen in the persona's direction, ½ when equal. Also, for every
    meter, how often the chosen answer scores higher, per persona: what else separates the
    answers (e.g. whether PhD-level answers are also longer). Pairs whose persona has no meter
    are counted under "unmatched". The same figures over the distinct pairs are under "distinct":
    a file of user records repeats pairs across users (the 600 P-Soups student/PhD users hold 237
    distinct pairs), and repeated pairs are not independent evidence.
    """
    distinct = list({(p["prompt"], p["chosen"], p["rejected"], p["ground_truth_persona"]): p for p in pairs}.values())
    result = {"kind": "meters-validity", **_agreement(pairs)}
    result["distinct"] = {k: v for k, v in _agreement(distinct).items() if k != "chosen_higher"}
    return result


def _credit(diff: float) -> float:
    return 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0


def _accuracy(credits: Sequence[float]) -> dict:
    n = len(credits)
    low, high = wilson(sum(credits), n)
    return {"n": n, "accuracy": sum(credits) / n if n else None, "low": low, "high": high,
            "ties": sum(c == 0.5 for c in credits)}


def _agreement(pairs: Sequence[Mapping]) -> dict:
    by_meter: dict[str, list[float]] = defaultdict(list)
    by_persona: dict[str, list[float]] = defaultdict(list)
    higher: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    targets, unmatched = {}, 0
    for pair in pairs:
        target = target_of(pair["ground_truth_persona"])
        if target is None:
            unmatched += 1
            continue
        targets[target.persona] = target
        chosen, rejected = measure(pair["chosen"]), measure(pair["rejected"])
        for name in METERS:
            if chosen[name] is not None and rejected[name] is not None:
                higher[target.persona][name].append(_credit(chosen[name] - rejected[name]))
        c, r = chosen[target.meter], rejected[target.meter]
        if c is not None and r is not None:
            credit = _credit(target.sign * (c - r))
            by_meter[target.meter].append(credit)
            by_persona[target.persona].append(credit)
    return {"n": len(pairs), "unmatched": unmatched,
            "by_meter": {name: _accuracy(c) for name, c in by_meter.items()},
            "by_persona": {p: {"meter": targets[p].meter, "direction": targets[p].direction, **_accuracy(c)}
                           for p, c in by_persona.items()},
            "chosen_higher": {p: {name: _accuracy(c) for name, c in by.items()} for p, by in higher.items()}}


def read_sentiment_truth(path: str | os.PathLike) -> list[tuple[float, str]]:
    """(human mean rating, text) from a file of lines ``id <tab> mean rating <tab> text``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Sentiment ratings file {str(path)!r} does not exist.")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            rating = float(parts[1])
        except (IndexError, ValueError):
            raise InputError(f"{path}: line {n} is not 'id <tab> mean rating <tab> text'.") from None
        if len(parts) < 3 or not parts[2].strip():
            raise InputError(f"{path}: line {n} has no text.")
        items.append((rating, parts[2].strip()))
    if len(items) < 3:
        raise InputError(f"{path}: needs at least 3 rated texts.")
    return items


def _correlation(x: Sequence[float], y: Sequence[float], method: str) -> dict:
    """Pearson or Spearman correlation with a 95% Fisher-z interval."""
    from scipy import stats

    r = float((stats.pearsonr if method == "pearson" else stats.spearmanr)(x, y)[0])
    n = len(x)
    if n <= 3 or abs(r) >= 1:
        return {"r": r, "low": None, "high": None, "n": n}
    z, half = math.atanh(r), 1.959963984540054 / math.sqrt(n - 3)
    return {"r": r, "low": math.tanh(z - half), "high": math.tanh(z + half), "n": n}


def sentiment_agreement(path: str | os.PathLike) -> dict:
    """VADER's compound score against human mean ratings: Pearson and Spearman r with 95%
    intervals, and how often the sign agrees on the texts humans rated non-neutral (|rating| ≥ 0.5
    on their −4..+4 scale; VADER's 0 counts as a miss), with a Wilson interval."""
    items = read_sentiment_truth(path)
    human = [rating for rating, _ in items]
    vader = [measure(text, ["vader_compound"])["vader_compound"] for _, text in items]
    polar = [(h, v) for h, v in zip(human, vader) if abs(h) >= 0.5]
    agree = sum((h > 0) == (v > 0) and v != 0 for h, v in polar)
    low, high = wilson(agree, len(polar))
    return {"file": str(path), "n": len(items), "pearson": _correlation(human, vader, "pearson"),
            "spearman": _correlation(human, vader, "spearman"),
            "sign": {"n": len(polar), "agree": agree, "rate": agree / len(polar) if polar else None,
                     "low": low, "high": high}}
