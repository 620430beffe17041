"""The independent meters over batch runs (`eval meters`) and the evidence that they measure what
they claim (`eval meters --validate`).

`score_meter_runs(runs)` takes one or more batch runs (each a list of records, e.g. one run per
persona combination) and gives, per run spec, each meter's mean with a 95% t-interval and the
share of answers the token budget cut (their length saturates there); and per persona that has a
meter (`meters.persona_targets`), each spec against the baseline spec (default direct) on the
same prompt of the same run: wins, ties, losses and win rates with Wilson intervals (`wins`).

`validate_pairs(pairs)` asks, on preference pairs labelled with a persona that has a meter (the
P-Soups student/PhD pairs), how often the meter ranks the chosen answer above the rejected one in
the persona's direction (ties count ½). `sentiment_agreement(path)` correlates VADER with human
sentiment ratings in the format of VADER's own evaluation data (``id <tab> mean rating <tab>
text``, Hutto & Gilbert 2014).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import InputError
from .fit import BASELINE, run_preferences
from .meters import METERS, Target, measure, persona_targets, target_of
from .records import spec_key
from .stats import mean_interval, wilson
from .wins import paired_outcomes, win_table


def run_targets(records: Sequence[dict], source: str = "the records") -> dict[str, Target]:
    """{label: Target} of a batch run's personas that have a meter ({} when the records name no
    preferences, as records of old runs may not)."""
    named = any((r.get("run") or {}).get("preferences") or (r.get("settings") or {}).get("labels") for r in records)
    return persona_targets(run_preferences(records, source)) if named else {}


def meter_rows(runs: Sequence[tuple[str, Sequence[dict]]]) -> list[dict]:
    """One row per record: {file, run, id, spec, meters, new_tokens, stopped_by}."""
    rows = []
    for run, (source, records) in enumerate(runs):
        for rec in records:
            stats = rec.get("stats") or {}
            rows.append({"file": source, "run": run, "id": str(rec["id"]), "spec": spec_key(rec),
                         "meters": measure(rec["text"]), "new_tokens": stats.get("new_tokens"),
                         "stopped_by": stats.get("stopped_by")})
    return rows


def meter_scores(rows: Sequence[dict], targets: Sequence[Mapping[str, Target]]) -> list[dict]:
    """The rows as `wins.paired_outcomes` scores: one per (row, persona of its run with a meter),
    the meter turned so that higher satisfies the persona."""
    scores = []
    for row in rows:
        for target in targets[row["run"]].values():
            value = row["meters"][target.meter]
            scores.append({"run": row["run"], "id": row["id"], "spec": row["spec"], "objective": target.persona,
                           "score": None if value is None else target.sign * value})
    return scores


def score_meter_runs(runs: Sequence[tuple[str, Sequence[dict]]], *, baseline: str = BASELINE) -> dict:
    """`eval meters`: `runs` = [(file name, records)]; see the module docstring. Returns
    ``{kind: "meters", files, baseline, seconds (the meters alone), seconds_per_100 (answers),
    meters {name: about}, by_spec {spec: {n, cut_by_budget,
    <meter>: {n, mean, low, high, sd}}}, objectives {persona: {meter, direction, text}},
    wins {persona: {spec: win_rates}}, rows [...]}``."""
    if not runs:
        raise InputError("No batch run to measure: pass --in FILE.")
    targets = [run_targets(records, source) for source, records in runs]
    started = time.perf_counter()
    rows = meter_rows(runs)
    seconds = time.perf_counter() - started  # the meters alone, not the statistics below
    by_spec: dict[str, dict] = {}
    for spec in dict.fromkeys(r["spec"] for r in rows):
        mine = [r for r in rows if r["spec"] == spec]
        cut = sum(r["stopped_by"] == "max_new_tokens" for r in mine)
        low, high = wilson(cut, len(mine))
        by_spec[spec] = {"n": len(mine), "cut_by_budget": {"count": cut, "share": cut / len(mine), "low": low,
                                                             "high": high}}
        for name in METERS:
            by_spec[spec][name] = mean_interval([r["meters"][name] for r in mine if r["meters"][name] is not None])
    objectives = {t.persona: {"meter": t.meter, "direction": t.direction, "text": t.text}
                  for run in targets for t in run.values()}
    table = win_table(paired_outcomes(meter_scores(rows, targets), baseline))
    wins = {persona: {spec: by[persona] for spec, by in table.items() if persona in by} for persona in objectives}
    return {"kind": "meters", "files": [source for source, _ in runs], "baseline": baseline,
            "seconds": seconds, "seconds_per_100": 100 * seconds / max(1, len(rows)),
            "has_baseline": any(r["spec"] == baseline for r in rows),
            "meters": {name: m.about for name, m in METERS.items()}, "by_spec": by_spec, "objectives": objectives,
            "wins": wins, "rows": rows}


# --------------------------------------------------------------------------- validity

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


def feedback_pairs(users: Sequence[Mapping]) -> list[dict]:
    """The example pairs of user records (`inference.load_users`), each labelled with its user's
    truth, without duplicates (users share example pairs)."""
    seen, out = set(), []
    for user in users:
        if not user.get("truth"):
            continue
        for p in user["pairs"]:
            key = (p["prompt"], p["chosen"], p["rejected"], user["truth"])
            if key not in seen:
                seen.add(key)
                out.append({**p, "ground_truth_persona": user["truth"]})
    return out


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
