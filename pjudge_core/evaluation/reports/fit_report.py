"""The persona-fit part of a report (a score file from `eval fit --out`): a Markdown section and
a plotly scatter.

The section gives, per run spec, the mean fit under each persona (nats per token) with its 95%
t-interval and the share of prompts where the spec beats the baseline (direct prompting) on every
persona, with a 95% Wilson interval. The scatter has one point per answer, its fit under persona
x against its fit under persona y, and each spec's means with their intervals as error bars: the
front that multi-objective alignment papers draw. An axis may be something else scored per answer
(the app puts a meter there): the score dict then names it in ``axis_titles`` {axis: title}.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative

from ...errors import InputError
from ..self_judge.fit import NOTE

REQUIRED = ("labels", "preferences", "by_spec", "beats_baseline", "scores")


def check_fit_scores(data: dict, path) -> None:
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise InputError(f"{path} is an incomplete fit file (no {missing[0]!r}); write it again with `eval fit --out`.")


def fit_axes(sc: dict, x: str | None = None, y: str | None = None) -> tuple[str, str] | None:
    """The two personas of the scatter (default: the first two); None when the run has one persona."""
    labels = sc["labels"]
    for flag, label in (("--fit-x", x), ("--fit-y", y)):
        if label is not None and label not in labels:
            raise InputError(f"{flag} {label}: the fit scores have personas {', '.join(labels)}.")
    rest = [label for label in labels if label not in (x, y)]
    x = x or (rest.pop(0) if rest else None)
    y = y or (rest.pop(0) if rest else None)
    if x is None or y is None:
        return None
    if x == y:
        raise InputError(f"--fit-x and --fit-y are both {x}; pick two different personas.")
    return x, y


def _ci(d: dict) -> str:
    if d.get("mean") is None:
        return "–"
    if d.get("low") is None:
        return f"{d['mean']:.3f}"
    return f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def fit_markdown(sc: dict) -> list[str]:
    labels, baseline = sc["labels"], sc.get("baseline")
    head = ["run spec", "n"] + [f"fit {label} [95% CI]" for label in labels]
    if baseline:
        head.append(f"beats {baseline} on every persona [95% Wilson CI]")
    lines = [f"## Persona fit, nats per token — scored by {sc.get('model', 'the model')}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for spec, by_label in sc["by_spec"].items():
        n = max((d["n"] for d in by_label.values()), default=0)
        cells = [spec, str(n)] + [_ci(by_label[label]) for label in labels]
        if baseline:
            b = sc["beats_baseline"].get(spec)
            cells.append("(baseline)" if spec == baseline else "–" if not b or b["rate"] is None else
                         f"{b['wins']}/{b['n']} = {b['rate']:.3f} [{b['low']:.3f}, {b['high']:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Personas: " + "; ".join(f"{label} = {text!r}" for label, text in sc["preferences"].items()) + "."]
    if sc.get("skipped"):
        lines += ["", f"Skipped {len(sc['skipped'])} records (empty, or longer than the scoring model's context)."]
    same = " The answers were written by the scoring model." if sc.get("same_model") else ""
    lines += ["", NOTE + same]
    return lines


def _short(text: str, limit: int = 55) -> str:
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def fit_scatter(sc: dict, x: str, y: str) -> go.Figure:
    """One point per answer (fit under x, fit under y) and each spec's means with 95% intervals."""
    fig = go.Figure()
    colours = qualitative.D3
    for i, (spec, by_label) in enumerate(sc["by_spec"].items()):
        colour = colours[i % len(colours)]
        rows = [s for s in sc["scores"] if s["spec"] == spec]
        fig.add_trace(go.Scatter(x=[s["mean"][x] for s in rows], y=[s["mean"][y] for s in rows], mode="markers",
                                 name=spec, legendgroup=spec, marker=dict(color=colour, size=7, opacity=0.55),
                                 text=[f"id {s['id']}" for s in rows],
                                 hovertemplate="%{text}<br>" + f"{x} %{{x:.3f}}<br>{y} %{{y:.3f}}<extra>{spec}</extra>"))
        mx, my = by_label[x], by_label[y]

        def bars(d):
            if d.get("low") is None:
                return None
            return dict(type="data", array=[d["high"] - d["mean"]], arrayminus=[d["mean"] - d["low"]], visible=True)

        fig.add_trace(go.Scatter(x=[mx["mean"]], y=[my["mean"]], mode="markers", name=f"{spec} mean (95% CI)",
                                 legendgroup=spec, error_x=bars(mx), error_y=bars(my),
                                 marker=dict(color=colour, size=15, symbol="diamond", line=dict(color="black", width=1))))
    prefs, titles = sc["preferences"], sc.get("axis_titles") or {}
    fig.add_hline(y=0, line=dict(color="#adb5bd", width=1))
    fig.add_vline(x=0, line=dict(color="#adb5bd", width=1))
    fig.update_layout(title=f"Persona fit per answer, nats per token — scored by {sc.get('model', 'the model')}",
                      template="plotly_white",
                      height=560, xaxis_title=titles.get(x) or f"fit under {x}: {_short(prefs[x])}",
                      yaxis_title=titles.get(y) or f"fit under {y}: {_short(prefs[y])}")
    return fig
