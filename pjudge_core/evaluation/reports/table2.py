"""The paper's Table 2, offline: win rates of each run spec against direct prompting, per objective.

The paper (Persona-judge, Table 2) aligns each response to one persona of every P-Soups
dimension at once (expertise: elementary / PhD, informativeness: concise / detailed, style:
friendly / unfriendly) and reports, per objective, how often GPT-4 prefers Persona-judge's
response to direct prompting's. Offline the judges are:

  * each independent meter (`meters`): the objectives it measures, a win when the spec's answer
    moves the meter further in the persona's direction than direct prompting's on the same prompt;
  * persona fit (`eval fit --out` files): a win when the answer's fit under that persona is
    higher; "under the writer" when the scoring model wrote the answers (partly circular), else
    under another model;
  * a judge model (`eval judge --out` files whose aspect is a persona's text or name).

`signal_tables(runs, scores)` builds one table per signal: rows = run specs, columns =
objectives, cells = win rate with ties counted 0 (the paper's way), its 95% Wilson interval and
W/T/L (`wins`). `combinations` lists the persona combinations the reproduction runs
(`python -m pjudge_core table2`, in `cli.table2`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence

from ...errors import InputError
from ...presets import presets
from ..meters import METERS
from ..meters.runs import score_meter_runs
from ..self_judge.fit import BASELINE
from .wins import judge_outcomes, paired_outcomes, win_cell, win_table

DIMENSIONS = (("elementary", "PhD"), ("concise", "detailed"), ("friendly", "unfriendly"))
TABLE_NOTE = ("Cells: win rate against {baseline} on the same prompt with ties counted 0 (the paper's way), "
              "[95% Wilson interval], wins/ties/losses.")


def combinations(text: str | None = None) -> list[tuple[str, ...]]:
    """Persona combinations, one persona per P-Soups dimension: all eight (None or "all"), or
    "elementary+concise+friendly,PhD+detailed+unfriendly"."""
    if text is None or text.strip() in ("", "all"):
        return list(itertools.product(*DIMENSIONS))
    known = presets().personas
    combos = []
    for part in text.split(","):
        names = tuple(n.strip() for n in part.split("+") if n.strip())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(f"Unknown persona {unknown[0]!r} in --combinations; known personas: {', '.join(known)}.")
        if not 2 <= len(names) <= 4:
            raise InputError(f"A combination names two to four personas joined by '+'; got {part.strip()!r}.")
        combos.append(names)
    if not combos:
        raise InputError("--combinations names no combination.")
    return combos


def slug(combo: Sequence[str]) -> str:
    return "+".join(combo).replace(" ", "_").replace(":", "")


def objective_name(text: str) -> str:
    """The preset name of a preference text (or the text itself when no preset has it)."""
    names = {p.text.strip(): name for name, p in presets().personas.items()}
    return names.get(text.strip(), text.strip())


def _order(objectives) -> list[str]:
    """Objectives in the P-Soups order (dimension by dimension), then the others as found."""
    first = [o for pair in DIMENSIONS for o in pair if o in objectives]
    return first + [o for o in objectives if o not in first]


def _table(title: str, signal: str, outcomes: Mapping[str, Mapping[str, Sequence[int]]], note: str = "") -> dict:
    rows = win_table(outcomes)
    columns = _order(dict.fromkeys(o for by in rows.values() for o in by))
    return {"title": title, "signal": signal, "columns": columns, "rows": rows, "note": note}


def meter_tables(runs: Sequence[tuple[str, Sequence[dict]]], baseline: str = BASELINE) -> list[dict]:
    """One table per meter that measures a persona of the runs."""
    result = score_meter_runs(runs, baseline=baseline)
    tables = []
    for name, meter in METERS.items():
        personas = [p for p, o in result["objectives"].items() if o["meter"] == name]
        outcomes: dict[str, dict] = defaultdict(dict)
        for persona in personas:
            for spec, d in result["wins"].get(persona, {}).items():
                outcomes[spec][persona] = [1] * d["wins"] + [0] * d["ties"] + [-1] * d["losses"]
        if outcomes:
            directions = ", ".join(f"{p} {result['objectives'][p]['direction']}" for p in _order(personas))
            tables.append(_table(f"{meter.title} ({name}; {directions} wins)", name, outcomes, meter.about))
    return tables


def fit_tables(fit_scores: Sequence[dict], baseline: str = BASELINE) -> list[dict]:
    """Persona fit files (`eval fit --out`), pooled per scoring model: a win when the spec's fit
    under the persona is higher than the baseline's on the same prompt."""
    by_model: dict[tuple[str, bool], list] = defaultdict(list)
    for run, sc in enumerate(fit_scores):
        names = {label: objective_name(text) for label, text in sc["preferences"].items()}
        for row in sc["scores"]:
            for label, value in row["mean"].items():
                by_model[(sc["model"], bool(sc.get("same_model")))].append(
                    {"run": run, "id": row["id"], "spec": row["spec"], "objective": names[label], "score": value})
    tables = []
    for (model, same), scores in by_model.items():
        who = "the writer" if same else "another model"
        tables.append(_table(f"Persona fit under {model}: {who}", f"fit:{model}",
                             paired_outcomes(scores, baseline),
                             "fit = log p(answer | persona) − log p(answer), nats per token"
                             + ("; partly circular: the same model wrote the answers" if same else "")))
    return tables


def judge_tables(judge_scores: Sequence[dict]) -> list[dict]:
    """`eval judge --out` files, pooled per judge model; the objective is the persona whose text
    or name is the judged aspect."""
    by_model: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    known = presets().personas
    for sc in judge_scores:
        aspect = sc["aspect"].strip()
        objective = aspect if aspect in known else objective_name(aspect)
        row = sc["a"] if sc["b"] == BASELINE else f"{sc['a']} vs {sc['b']}"
        by_model[sc["judge"]][row][objective] += judge_outcomes(sc)
    return [_table(f"Pairwise judge {model}", f"judge:{model}", rows,
                   "the judge's verdict in both orders; a disagreement between the orders is a tie")
            for model, rows in by_model.items()]


def signal_tables(runs: Sequence[tuple[str, Sequence[dict]]], scores: Sequence[dict] = (),
                  baseline: str = BASELINE) -> list[dict]:
    """Every signal's table: the meters (from the records), fit and judge (from score files)."""
    return (meter_tables(runs, baseline) + fit_tables([s for s in scores if s["kind"] == "fit"], baseline)
            + judge_tables([s for s in scores if s["kind"] == "judge"]))


def tables_markdown(tables: Sequence[dict], baseline: str = BASELINE) -> list[str]:
    if not tables:
        return []
    lines = [f"## Win rate against {baseline}, per objective (the paper's Table 2 layout)", "",
             TABLE_NOTE.format(baseline=baseline)]
    for t in tables:
        lines += ["", f"### {t['title']}", ""]
        if t["note"]:
            lines += [t["note"][0].upper() + t["note"][1:] + ".", ""]
        lines += ["| run spec | " + " | ".join(t["columns"]) + " |", "|---|" + "---|" * len(t["columns"])]
        for spec, by in t["rows"].items():
            lines.append(f"| {spec} | " + " | ".join(win_cell(by.get(c)) for c in t["columns"]) + " |")
    return lines


def tables_figure(tables: Sequence[dict], baseline: str = BASELINE):
    """One bar panel per signal: win rate per objective (ties 0) with 95% Wilson intervals, a bar per spec."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(tables), cols=1, subplot_titles=[t["title"] for t in tables])
    for i, t in enumerate(tables, 1):
        for spec, by in t["rows"].items():
            cells = [by.get(c) for c in t["columns"]]
            rate = [d["rate"] if d else None for d in cells]
            fig.add_trace(go.Bar(x=t["columns"], y=rate, name=spec, legendgroup=spec, showlegend=i == 1,
                                 error_y=dict(type="data", visible=True,
                                              array=[(d["high"] - d["rate"]) if d else 0 for d in cells],
                                              arrayminus=[(d["rate"] - d["low"]) if d else 0 for d in cells]),
                                 text=[f"{d['wins']}/{d['ties']}/{d['losses']}" if d else "" for d in cells],
                                 hovertemplate="%{x}: win rate %{y:.2f}<br>W/T/L %{text}<extra>" + spec + "</extra>"),
                          row=i, col=1)
        fig.add_hline(y=0.5, line=dict(color="#adb5bd", dash="dot"), row=i, col=1)
        fig.update_yaxes(range=[0, 1], title_text="win rate", row=i, col=1)
    fig.update_layout(height=300 * len(tables) + 80, template="plotly_white", barmode="group",
                      title=f"Win rate against {baseline} per objective (ties count 0; dotted: half the prompts)")
    return fig
