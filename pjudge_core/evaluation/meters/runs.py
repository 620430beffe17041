"""The independent meters over batch runs (`eval meters`).

`score_meter_runs(runs)` takes one or more batch runs (each a list of records, e.g. one run per
persona combination) and gives, per run spec, each meter's mean with a 95% t-interval and the
share of answers the token budget cut (their length saturates there); and per persona that has a
meter (`meters.persona_targets`), each spec against the baseline spec (default direct) on the
same prompt of the same run: wins, ties, losses and win rates with Wilson intervals
(`reports.wins`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from ...engine.methods import BASELINE
from ...errors import InputError
from ..reports.wins import paired_outcomes, win_table
from ..runs.records import spec_key
from ..self_judge.fit import run_preferences
from ..stats import mean_interval, wilson
from . import METERS, Target, measure, persona_targets


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
