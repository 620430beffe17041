"""Plotly figures of a Persona-judge trace (pure functions of the Steps; no Gradio here).

* `logratio_figure`: log(p/q) per output position, coloured by decision. Above 0 the judge
  liked the drafted token more than the drafter did; for a resampled position the bar is the
  *rejected draft's* log(p/q) (below 0: the judge disliked what the drafter proposed).
* `acceptance_figure`: acceptance rate per block (bars coloured by drafter) and per drafter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..engine.trace import Step

COLORS = {"accepted": "#2e9e5b", "resampled": "#d9534f", "bonus": "#3b7dd8", "sampled": "#888888"}
DRAFTER_COLORS = {"A": "#e08a00", "B": "#8a4fd8"}
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
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"color": "#8a8f98"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        bargap=0.1,
    )
    fig.update_xaxes(gridcolor="rgba(128,128,128,0.2)", zerolinecolor="rgba(128,128,128,0.5)")
    fig.update_yaxes(gridcolor="rgba(128,128,128,0.2)", zerolinecolor="rgba(128,128,128,0.5)")
    return fig


def _hover(step: Step) -> str:
    text = step.text.replace("\n", "⏎")
    ratio = "" if step.q is None else f"<br>p/q={step.p / step.q:.3g}" if step.q > 0 else "<br>q=0"
    q = "" if step.q is None else f" q={step.q:.3g}"
    extra = ""
    if step.decision == "resampled" and step.rejected_text is not None:
        extra = f"<br>rejected draft {step.rejected_text!r}"
    # Plotly renders hover text as its own restricted markup; escape < > & from model output.
    safe = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    return (f"#{step.index} {safe(repr(text))}<br>{step.decision}, drafter {step.drafter}, block {step.block}"
            f"<br>p={step.p:.3g}{q}{ratio}{safe(extra)}")


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
    for d in ("A", "B"):
        judged = [s for s in steps if s.drafter == d and s.decision in ("accepted", "resampled")]
        out[d] = sum(s.decision == "accepted" for s in judged) / len(judged) if judged else None
    return out


def acceptance_figure(steps: Sequence[Step], height: int = 280) -> go.Figure:
    """Left: acceptance rate per block (colour = drafter). Right: overall rate per drafter."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.75, 0.25], horizontal_spacing=0.08,
)
    blocks = block_rates(steps)
    for d in ("A", "B"):
        mine = [b for b in blocks if b["drafter"] == d]
        if mine:
            fig.add_trace(go.Bar(
                x=[b["block"] for b in mine], y=[b["rate"] or 0.0 for b in mine], name=f"{d} drafted",
                marker_color=DRAFTER_COLORS[d],
                hovertext=[f"block {b['block']}: {b['accepted']}/{b['judged']} drafts accepted" for b in mine],
                hoverinfo="text",
            ), row=1, col=1)
    rates = drafter_rates(steps)
    fig.add_trace(go.Bar(
        x=["A drafts", "B drafts"], y=[rates["A"] or 0.0, rates["B"] or 0.0], showlegend=False,
        marker_color=[DRAFTER_COLORS["A"], DRAFTER_COLORS["B"]],
        text=["–" if rates[d] is None else f"{100 * rates[d]:.0f}%" for d in ("A", "B")],
        textposition="auto", hoverinfo="text",
    ), row=1, col=2)
    _layout(fig, "Drafts kept by the judge", height)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(title_text="block (colour = who drafted)", row=1, col=1)
    fig.update_xaxes(title_text="per drafter", row=1, col=2)
    return fig
