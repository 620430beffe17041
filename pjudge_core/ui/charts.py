"""Plotly figures of a Persona-judge trace (pure functions of the Steps; no Gradio here).

* `logratio_figure`: log(p/q) per output position, coloured by decision. Above 0 the judge
  liked the drafted token more than the drafter did; for a resampled position the bar is the
  *rejected draft's* log(p/q) (below 0: the judge disliked what the drafter proposed).
* `acceptance_figure`: acceptance rate per block (bars coloured by drafter) and per drafter.
* `heatmap_figure`: blocks (rows) x position in the block (columns), each cell coloured by what
  the judge decided (accepted / resampled / bonus), hover with token, p, q, p/q, drafter and judge.
* `fit_heatmap_figure`: persona fit per token of finished answers (a row per persona).
* `front_figure`: a sampled front, one point per answer and each method's means (`fit_report`);
  an axis is a persona's fit or an independent meter (`evaluation.meters`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..engine.trace import Step
from ..errors import InputError
from ..evaluation.meters import METERS, measure
from ..evaluation.reports.fit_report import fit_scatter
from ..evaluation.self_judge.fit import Fit
from ..evaluation.stats import mean_interval

COLORS = {"accepted": "#2e9e5b", "resampled": "#d9534f", "bonus": "#3b7dd8", "sampled": "#888888"}
DRAFTER_COLORS = {"A": "#e08a00", "B": "#8a4fd8", "C": "#0f9d8f", "D": "#d6336c"}
CLIP = 6.0  # |log(p/q)| shown at most; q = 0 (token outside the draft's top-k/top-p) becomes +CLIP


def log_ratio(step: Step) -> float:
    """Clipped natural log of p/q; 0 for bonus tokens (no draft), +CLIP when q = 0."""
    if step.q is None:
        return 0.0
    if step.q <= 0:
        return CLIP
    if step.p <= 0:
        return -CLIP
    return max(-CLIP, min(CLIP, math.log(step.p / step.q)))


def judged_log_ratio(step: Step) -> float:
    """What the judge thought of the draft at this position: the rejected draft's log(p/q) for a
    resampled token, the emitted token's otherwise."""
    if step.decision == "resampled" and step.rejected_p is not None and step.rejected_q is not None:
        return log_ratio(Step(step.index, -1, "", step.rejected_p, step.rejected_q, "resampled"))
    return log_ratio(step)


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 50, "r": 10, "t": 60, "b": 45},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        bargap=0.1,
    )
    return app_style(fig)


def app_style(fig: go.Figure) -> go.Figure:
    """Transparent background and grey text and grid: readable in the page's light and dark themes."""
    fig.update_layout(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font={"color": "#8a8f98"})
    fig.update_xaxes(gridcolor="rgba(128,128,128,0.2)", zerolinecolor="rgba(128,128,128,0.5)")
    fig.update_yaxes(gridcolor="rgba(128,128,128,0.2)", zerolinecolor="rgba(128,128,128,0.5)")
    return fig


def front_figure(result: Mapping | None, x: str, y: str) -> go.Figure | None:
    """A sampled front (`compare` result) as the report's scatter, axes = a persona's fit or a
    meter each, styled for the page, legend under the plot so a phone keeps the width for the points."""
    if not result:
        return None
    check_axes(result["labels"], x, y)
    fig = fit_scatter(front_scores(result, [a for a in (x, y) if a in METERS]), x, y)
    fig.update_layout(template="plotly")  # the report's white template would be a white box in dark mode
    app_style(fig)
    title = ("Persona fit per answer, nats per token" if x not in METERS and y not in METERS
             else "Per answer: persona fit (nats per token) and independent meters")
    fig.update_layout(title={"text": title, "font": {"size": 14}}, margin={"l": 50, "r": 10, "t": 60, "b": 40},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0})
    return fig


def check_axes(labels, x, y) -> None:
    """The front's axes must be two different personas of the run or meters."""
    axes = list(labels) + list(METERS)
    if x not in axes or y not in axes or x == y:
        raise InputError(f"Pick two different axes: personas among {', '.join(labels)}, or meters "
                         f"({', '.join(METERS)}).")


def front_scores(result: Mapping, meters: Sequence[str] = ()) -> dict:
    """A `compare` result as `fit_report.fit_scatter`'s score dict (answers without a fit left out),
    with the named meters of each answer's text next to its fits (higher on the axis = more of it)."""
    answers = [a for a in result["answers"] if a.get("mean")]
    values = [measure(a["text"], meters) if meters else {} for a in answers]
    scores = [{"id": f"sample {a['sample']} (seed {a['seed']})", "spec": a["spec"], "mean": {**a["mean"], **v}}
              for a, v in zip(answers, values) if all(v[m] is not None for m in meters)]
    by_spec = {spec: {**by_label, **{m: mean_interval([s["mean"][m] for s in scores if s["spec"] == spec])
                                     for m in meters}}
               for spec, by_label in result["by_spec"].items()}
    # The scatter's axis titles quote the preferences, which plotly would read as its markup.
    preferences = {label: plotly_text(text) for label, text in result["preferences"].items()}
    titles = {m: f"{METERS[m].title} ({m})" for m in meters}
    return {**result, "preferences": preferences, "scores": scores, "by_spec": by_spec, "axis_titles": titles}


def _hover(step: Step) -> str:
    text = step.text.replace("\n", "⏎")
    ratio = "" if step.q is None else f"<br>p/q={step.p / step.q:.3g}" if step.q > 0 else "<br>q=0"
    roles = f"drafter {step.drafter}, judge {step.judge}" if step.judge else f"drafter {step.drafter}"
    q = "" if step.q is None else f" q={step.q:.3g}"
    extra = ""
    if step.decision == "resampled" and step.rejected_text is not None:
        extra = f"<br>rejected draft {step.rejected_text!r}"
    return (f"#{step.index} {plotly_text(repr(text))}<br>{step.decision}, {roles}, block {step.block}"
            f"<br>p={step.p:.3g}{q}{ratio}{plotly_text(extra)}")


def plotly_text(text: str) -> str:
    """Plotly renders hover text as its own restricted markup: model output gets < > & escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def logratio_figure(steps: Sequence[Step], height: int = 280) -> go.Figure:
    """Bars of log(p/q) per output token, one trace per decision (so the legend explains colours)."""
    fig = go.Figure()
    for decision in ("accepted", "resampled", "bonus", "sampled"):
        chosen = [s for s in steps if s.decision == decision]
        if not chosen:
            continue
        fig.add_trace(go.Bar(
            x=[s.index for s in chosen],
            y=[judged_log_ratio(s) if decision != "bonus" else 0.15 for s in chosen],
            name=decision,
            marker_color=COLORS[decision],
            hovertext=[_hover(s) for s in chosen],
            hoverinfo="text",
        ))
    fig.add_hline(y=0, line_width=1, line_color="rgba(128,128,128,0.6)")
    _layout(fig, "Judge vs drafter, per token", height)
    fig.update_xaxes(title_text="output token")
    fig.update_yaxes(title_text="log(p/q) of the draft", range=[-CLIP - 0.5, CLIP + 0.5] if steps else None)
    if not steps:
        fig.add_annotation(text="no tokens yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def block_rates(steps: Sequence[Step]) -> list[dict]:
    """Per block: drafter, number of judged drafts, accepted drafts, rate (bonus not counted)."""
    blocks: dict[int, dict] = {}
    for s in steps:
        b = blocks.setdefault(s.block, {"block": s.block, "drafter": s.drafter, "judged": 0, "accepted": 0})
        if s.decision in ("accepted", "resampled"):
            b["judged"] += 1
            b["accepted"] += s.decision == "accepted"
    for b in blocks.values():
        b["rate"] = b["accepted"] / b["judged"] if b["judged"] else None
    return [blocks[k] for k in sorted(blocks)]


def drafter_rates(steps: Sequence[Step]) -> dict[str, float | None]:
    out = {}
    for d in sorted({s.drafter for s in steps if s.drafter}):
        judged = [s for s in steps if s.drafter == d and s.decision in ("accepted", "resampled")]
        out[d] = sum(s.decision == "accepted" for s in judged) / len(judged) if judged else None
    return out


def acceptance_figure(steps: Sequence[Step], height: int = 280) -> go.Figure:
    """Left: acceptance rate per block (colour = drafter). Right: overall rate per drafter."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], horizontal_spacing=0.08)
    blocks = block_rates(steps)
    rates = drafter_rates(steps)
    for d in rates:
        mine = [b for b in blocks if b["drafter"] == d]
        fig.add_trace(go.Bar(
            x=[b["block"] for b in mine], y=[b["rate"] or 0.0 for b in mine], name=f"{d} drafted",
            marker_color=DRAFTER_COLORS.get(d, "#888888"),
            hovertext=[f"block {b['block']}: {b['accepted']}/{b['judged']} drafts accepted" for b in mine],
            hoverinfo="text",
        ), row=1, col=1)
    fig.add_trace(go.Bar(
        x=[f"{d} drafts" for d in rates], y=[rates[d] or 0.0 for d in rates], showlegend=False,
        marker_color=[DRAFTER_COLORS.get(d, "#888888") for d in rates],
        text=["–" if rates[d] is None else f"{100 * rates[d]:.0f}%" for d in rates],
        textposition="auto", hoverinfo="text",
    ), row=1, col=2)
    _layout(fig, "Drafts kept by the judge", height)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(title_text="block (colour = who drafted)", row=1, col=1)
    fig.update_xaxes(title_text="per drafter", row=1, col=2)
    return fig


HEATMAP_CODES = {"accepted": 0, "resampled": 1, "bonus": 2}


def heatmap_figure(steps: Sequence[Step], height: int | None = None) -> go.Figure:
    """Blocks x position in block, coloured by the judge's decision; empty cells stay blank."""
    blocks = sorted({s.block for s in steps if s.decision in HEATMAP_CODES})
    width = max([sum(1 for s in steps if s.block == b) for b in blocks], default=1)
    z = [[None] * width for _ in blocks]
    text = [[""] * width for _ in blocks]
    row_of = {b: i for i, b in enumerate(blocks)}
    position: dict[int, int] = {}
    for s in steps:
        if s.block not in row_of:
            continue
        col = position.get(s.block, 0)
        position[s.block] = col + 1
        z[row_of[s.block]][col] = HEATMAP_CODES[s.decision]
        text[row_of[s.block]][col] = _hover(s)
    colors = [COLORS["accepted"], COLORS["resampled"], COLORS["bonus"]]
    scale = [[0, colors[0]], [1 / 3, colors[0]], [1 / 3, colors[1]], [2 / 3, colors[1]], [2 / 3, colors[2]],
             [1, colors[2]]]
    labels = [f"block {b} · {next(s.drafter for s in steps if s.block == b)}→"
              f"{next(s.judge for s in steps if s.block == b) or '?'}" for b in blocks]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(1, width + 1)), y=labels, text=text, hoverinfo="text", zmin=-0.5, zmax=2.5,
        colorscale=scale, xgap=2, ygap=2,
        colorbar={"tickvals": [0, 1, 2], "ticktext": ["accepted", "resampled", "bonus"], "thickness": 12},
    ))
    rows = max(1, len(blocks))
    _layout(fig, "Every block: who drafted → who judged, and what the judge decided", height or min(900, 120 + 22 * rows))
    fig.update_xaxes(title_text="position in the block (λ drafts, then the bonus)", dtick=1)
    fig.update_yaxes(autorange="reversed", title_text="")
    if not blocks:
        fig.add_annotation(text="no Persona-judge tokens yet", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper")
    return fig


FIT_CLIP = 3.0  # nats: the colour scale ends here so one extreme token does not wash out the rest


def fit_heatmap_figure(fits: Mapping[str, Fit], persona_names: Mapping[str, str] | None = None,
                       model: str | None = None) -> go.Figure:
    """Persona fit per token: one subplot per answer (`fits` is {panel title: Fit}), a row per
    persona, a column per token, coloured by that token's implicit reward under that persona
    (blue: the persona made the model more willing to write it; red: less). `model` names the scorer."""
    names = persona_names or {}
    titles = list(fits)
    rows = max(1, len(titles))
    heights = [max(1, len(fits[t].labels)) for t in titles] or [1]
    # Shared x: token positions line up across answers and only the bottom axis has tick labels,
    # which would otherwise collide with the next subplot's title.
    fig = make_subplots(rows=rows, cols=1, subplot_titles=titles or None, shared_xaxes=True,
                        vertical_spacing=min(0.12, 0.5 / rows), row_heights=heights)
    values = [abs(v) for fit in fits.values() for per in fit.per_token.values() for v in per]
    span = min(FIT_CLIP, max(0.5, sorted(values)[int(0.98 * (len(values) - 1))] if values else 1.0))
    for row, title in enumerate(titles, 1):
        fit = fits[title]
        labels = [plotly_text(f"{label} {names.get(label, '')}".strip()) for label in fit.labels]
        tokens = [plotly_text(_visible(t)) for t in fit.texts]
        fig.add_trace(go.Heatmap(
            z=[fit.per_token[label] for label in fit.labels], x=list(range(1, len(tokens) + 1)), y=labels,
            customdata=[tokens] * len(labels), coloraxis="coloraxis", xgap=1, ygap=2,
            hovertemplate=f"<b>{plotly_text(title)}</b><br>token %{{x}}: %{{customdata}}<br>%{{y}}: fit "
                          "%{z:+.2f} nats<extra></extra>"), row=row, col=1)
        fig.update_yaxes(autorange="reversed", row=row, col=1)
    scorer = f"under {plotly_text(model)}" if model else "(scored by the same model)"
    _layout(fig, f"Persona fit per token {scorer}", 110 + sum(34 * h + 50 for h in heights))
    fig.update_layout(coloraxis={"colorscale": "RdBu", "cmin": -span, "cmax": span, "cmid": 0,
                                 "colorbar": {"title": {"text": "nats"}, "thickness": 12}})
    fig.update_xaxes(title_text="token", row=rows, col=1)
    if not titles:
        fig.add_annotation(text="no finished answer yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def _visible(text: str) -> str:
    """A token's text for a hover label: whitespace made visible."""
    return text.replace("\n", "⏎").replace(" ", "·") or "∅"
