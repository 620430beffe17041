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
