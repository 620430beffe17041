"""The ablation's tables (`python -m pjudge_core ablation`): did each method move the meters at all,
and did it beat direct prompting?

Per decoding mode (sampling, greedy) the command writes a **control** run, whose only preference
is the placebo (`self_judge.sensitivity.PLACEBO`): ``direct[]`` (no preference) and ``direct`` (the
placebo); and one run per persona pair with `PAIR_SPECS`. Every run uses the same prompts and the
same seed per prompt, so the answers pair up by prompt id across runs.

`pair_tables` gives, per mode, pair and persona of the pair that has a meter
(`meters.persona_targets`), one table over every spec: the meter's mean, the share the token budget
cut, the paired shift against no preference (did it move?) and against direct prompting (the
paper's comparison) in the meter's units, the win rate against direct in the persona's direction
(ties counted 0, Wilson interval), and persona-judge − official as a paired difference. A judge
model's win rates against direct join as a column when given. Shifts are raw: a persona that wants
the meter lower is served by a negative shift (the table says which way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...engine.specs import RunSpec
from ..meters import METERS, Target, measure, persona_targets
from ..stats import mean_interval, paired_difference, wilson
from .wins import outcome, win_cell, win_rates

NONE, PLACEBO = "none", "placebo"
CONTROL_SPECS = {"direct[]": NONE, "direct": PLACEBO}  # the control run's keys -> the rows they become
PAIR_SPECS = ("direct[A]", "direct[B]", "direct", "persona-judge", "persona-judge-base", "official", "official-base",
              "fusion", "fusion(alpha=0.5)")
DIRECT = "direct"
ALONE = ("direct[A]", "direct[B]")  # the rows of the pair's first and second persona alone
ROWS = (NONE, PLACEBO, *(RunSpec.parse(s).key for s in PAIR_SPECS))
PJ_VS_OFFICIAL = ("persona-judge", "official")


def answers(controls: Sequence[dict], records: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """{row: {prompt id: {meters, cut}}} of one pair's run and its mode's control run."""
    out: dict[str, dict[str, dict]] = {row: {} for row in ROWS}
    for rec, row in [(r, CONTROL_SPECS.get(r["spec"])) for r in controls] + [(r, r["spec"]) for r in records]:
        if row in out:
            out[row][str(rec["id"])] = {"meters": measure(rec["text"]),
                                         "cut": (rec.get("stats") or {}).get("stopped_by") == "max_new_tokens"}
    return out


def _values(rows: Mapping[str, dict], meter: str) -> dict[str, float]:
    return {pid: a["meters"][meter] for pid, a in rows.items() if a["meters"][meter] is not None}


def meter_table(rows: Mapping[str, Mapping[str, dict]], target: Target,
                judged: Mapping[str, dict] | None = None) -> dict:
    """One persona's table over every row (module docstring). `judged`: {spec: judge win rates vs direct}."""
    meter, sign = target.meter, target.sign
    direct = _values(rows[DIRECT], meter)
    none = _values(rows[NONE], meter)
    table = {}
    for row, by_id in rows.items():
        values = _values(by_id, meter)
        wins = [outcome(sign * values[pid], sign * direct[pid]) for pid in values if pid in direct]
        table[row] = {"n": len(by_id), "mean": mean_interval(list(values.values())),
                      "cut": sum(a["cut"] for a in by_id.values()) / len(by_id) if by_id else None,
                      "vs_none": paired_difference(values, none) if row != NONE else None,
                      "vs_direct": paired_difference(values, direct) if row != DIRECT else None,
                      "wins_vs_direct": win_rates(wins) if row != DIRECT else None,
                      "judge_vs_direct": (judged or {}).get(row)}
    a, b = PJ_VS_OFFICIAL
    return {"persona": target.persona, "meter": meter, "direction": target.direction, "rows": table,
            "pj_minus_official": paired_difference(_values(rows[a], meter), _values(rows[b], meter))}


def pair_tables(controls: Sequence[dict], records: Sequence[dict], preferences: Mapping[str, str],
                judged: Mapping[str, Mapping[str, dict]] | None = None) -> dict:
    """{persona: meter_table} for every persona of one pair that has a meter. `preferences` is the
    pair's {label: text}; `judged`: {persona: {spec: judge win rates vs direct}}."""
    rows = answers(controls, records)
    return {t.persona: meter_table(rows, t, (judged or {}).get(t.persona))
            for t in persona_targets(preferences).values()}


# ---------------------------------------------------------------------- markdown
def _shift(d: Mapping | None, digits: int) -> str:
    if not d or d.get("mean") is None:
        return "–"
    if d.get("low") is None:
        return f"{d['mean']:+.{digits}f}"
    return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def _mean(d: Mapping, digits: int) -> str:
    if d.get("mean") is None:
        return "–"
    return f"{d['mean']:.{digits}f}" + ("" if d.get("low") is None else f" ± {d['high'] - d['mean']:.{digits}f}")


def row_label(row: str, pair: Sequence[str]) -> str:
    """'A alone (elementary)' for direct[A]; the spec's label otherwise."""
    if row in (NONE, PLACEBO):
        return {NONE: "no preference", PLACEBO: "placebo"}[row]
    if row in ALONE:
        i = ALONE.index(row)
        return f"{'AB'[i]} alone ({pair[i]})"
    return RunSpec.parse(row).label


def table_markdown(table: Mapping, pair: Sequence[str]) -> str:
    """One persona's table as markdown."""
    meter = METERS[table["meter"]]
    digits = max(1, meter.digits)
    judge = any(r["judge_vs_direct"] for r in table["rows"].values())
    head = ["run", f"{meter.title}: mean ± 95%", "cut", "vs no preference", "vs direct", "wins vs direct"]
    lines = [f"**{table['persona']}** wants {meter.title} {table['direction']}: shifts are run − other, paired by "
             "prompt, with 95% intervals; wins count the persona's direction (ties 0).", "",
             "| " + " | ".join(head + (["judge wins vs direct"] if judge else [])) + " |",
             "|" + "---|" * (len(head) + judge)]
    for row, r in table["rows"].items():
        cells = [row_label(row, pair), _mean(r["mean"], digits), "–" if r["cut"] is None else f"{r['cut']:.0%}",
                 _shift(r["vs_none"], digits), _shift(r["vs_direct"], digits), win_cell(r["wins_vs_direct"])]
        if judge:
            cells.append(win_cell(r["judge_vs_direct"]))
        lines.append("| " + " | ".join(cells) + " |")
    d = table["pj_minus_official"]
    p = "" if d.get("p_value") is None else f", p = {d['p_value']:.2f}"
    lines += ["", f"persona-judge − official: {_shift(d, digits)} (n = {d['n']}{p})."]
    return "\n".join(lines)


def headline_markdown(modes: Mapping[str, Mapping]) -> str:
    """One line per mode, pair and measured persona: how far the persona alone, direct prompting and
    persona-judge moved the meter from no preference, persona-judge against direct (shift and wins)
    and against official. `modes` is the report's {mode: {"pairs": {name: {"pair", "tables"}}}}."""
    lines = ["| mode | persona (meter, wants) | persona alone vs none | direct vs none | persona-judge vs none | "
             "persona-judge vs direct | wins vs direct | persona-judge − official |", "|" + "---|" * 8]
    for mode, run in modes.items():
        for entry in run["pairs"].values():
            pair = entry["pair"]
            for table in entry["tables"].values():
                meter, rows = METERS[table["meter"]], table["rows"]
                digits = max(1, meter.digits)
                alone = rows[ALONE[list(pair).index(table["persona"])]]
                pj = rows[PJ_VS_OFFICIAL[0]]
                lines.append(" | ".join([
                    f"| {mode}", f"{table['persona']} ({meter.title}, {table['direction']})",
                    _shift(alone["vs_none"], digits), _shift(rows[DIRECT]["vs_none"], digits),
                    _shift(pj["vs_none"], digits), _shift(pj["vs_direct"], digits), win_cell(pj["wins_vs_direct"]),
                    _shift(table["pj_minus_official"], digits)]) + " |")
    return "\n".join(lines)


def sensitivity_markdown(result: Mapping) -> str:
    """The KL table of `self_judge.sensitivity.sensitivity` as markdown."""
    lines = [f"Mean per-token KL(persona ‖ no preference) along {result['n']} no-preference answers "
             f"({result['cut']} cut by the budget); placebo {_shift(result['placebo_kl'], 3).lstrip('+')} nats.", "",
             "| persona | KL (nats/token) | beyond the placebo | followed |", "|---|---|---|---|"]
    for name, entry in result["personas"].items():
        lines.append(f"| {name} | {_shift(entry['kl'], 3).lstrip('+')} | {_shift(entry['vs_placebo'], 3)} | "
                     f"{'yes' if entry['followed'] else 'no'} |")
    return "\n".join(lines)


def acceptance(records: Sequence[dict], spec: str) -> float | None:
    """The share of `spec`'s drafted tokens its judge accepted, pooled over its answers (how far the two
    personas pull apart: 1 when the judge would have written every draft itself)."""
    decisions = [(r.get("stats") or {}).get("decisions") or {} for r in records if r["spec"] == spec]
    accepted = sum(d.get("accepted", 0) for d in decisions)
    judged = accepted + sum(d.get("resampled", 0) for d in decisions)
    return accepted / judged if judged else None


def cut_share(records: Sequence[dict]) -> dict:
    """{count, n, share, low, high}: the answers the token budget cut, with a Wilson interval."""
    cut = sum((r.get("stats") or {}).get("stopped_by") == "max_new_tokens" for r in records)
    low, high = wilson(cut, len(records))
    return {"count": cut, "n": len(records), "share": cut / len(records) if records else None, "low": low,
            "high": high}
