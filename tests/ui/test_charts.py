"""Plotly figures of a trace, as pure functions of the Steps."""

import json
import math

import pytest

from pjudge_core import persona_judge
from pjudge_core.engine.trace import Step
from pjudge_core.ui import charts


@pytest.fixture(scope="module")
def pj(tiny_lm):
    return persona_judge(tiny_lm, "Describe a sunset.", "be vivid", "be creative", max_new_tokens=40, seed=3)


def _step(text, **kw):
    base = dict(index=0, token_id=1, text=text, p=0.5, q=0.25, decision="resampled", block=2, drafter="A", u=0.9,
                rejected_token_id=2, rejected_text=text, rejected_p=0.1, rejected_q=0.4)
    base.update(kw)
    return Step(**base)


def test_charts(pj):
    fig = charts.logratio_figure(pj.steps)
    names = {t.name for t in fig.data}
    assert names <= {"accepted", "resampled", "bonus"} and names
    assert sum(len(t.x) for t in fig.data) == len(pj.steps)
    for t in fig.data:
        assert all(-charts.CLIP <= y <= charts.CLIP for y in t.y)
        assert all("<script" not in h for h in t.hovertext)
    acc = charts.acceptance_figure(pj.steps)
    rates = charts.drafter_rates(pj.steps)
    assert rates == {k: v for k, v in pj.stats["acceptance_rate_by_drafter"].items()}
    assert len(charts.block_rates(pj.steps)) == pj.stats["blocks"]
    json.loads(acc.to_json())
    charts.logratio_figure([])  # empty is fine


def test_resampled_bar_shows_rejected_draft():
    step = _step("x", p=0.5, q=0.0, rejected_p=0.1, rejected_q=0.4)
    assert charts.judged_log_ratio(step) == pytest.approx(math.log(0.25))
    assert charts.log_ratio(step) == charts.CLIP


def test_chart_hover_escapes():
    fig = charts.logratio_figure([_step("<b>x</b>")])
    assert "<b>x" not in fig.data[0].hovertext[0]


def test_heatmap_has_a_row_per_block_and_a_cell_per_decision(pj):
    fig = charts.heatmap_figure(pj.steps)
    trace = fig.data[0]
    assert len(trace.y) == pj.stats["blocks"]
    cells = [v for row in trace.z for v in row if v is not None]
    assert len(cells) == len(pj.steps)
    codes = {"accepted": 0, "resampled": 1, "bonus": 2}
    assert sorted(cells) == sorted(codes[s.decision] for s in pj.steps)
    assert trace.y[0].startswith("block 0 · A→B") and trace.y[1].startswith("block 1 · B→A")
    hovers = [h for row in trace.text for h in row if h]
    assert all("p=" in h and "drafter" in h for h in hovers)
    charts.heatmap_figure([])  # empty is fine


def test_heatmap_hover_escapes_model_output():
    fig = charts.heatmap_figure([_step("<img src=x>", judge="B")])
    assert "<img" not in fig.data[0].text[0][0]
