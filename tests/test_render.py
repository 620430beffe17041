"""Token HTML, legend, stats and run records as pure functions (tiny model; no browser)."""

import html
import json
import math
import re

import pytest

from pjudge_core import persona_judge
from pjudge_core.engine.trace import Step
from pjudge_core.ui import records, render

EVIL = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "' onmouseover='alert(1)", "a & b"]


@pytest.fixture(scope="module")
def pj(tiny_lm):
    return persona_judge(tiny_lm, "Describe a sunset.", "be vivid", "be creative", max_new_tokens=40, seed=3)


def test_every_token_is_a_span_with_details(pj):
    out = render.tokens_html(pj.steps, persona_names={"A": "vivid", "B": "creative"})
    spans = re.findall(r"<span class=\"tok [^>]*>", out)
    assert len(spans) == len(pj.steps) == out.count('class="tok ')
    for step, span in zip(pj.steps, spans):
        assert f'data-decision="{step.decision}"' in span
        assert f'data-drafter="{step.drafter}"' in span
        assert f'data-block="{step.block}"' in span
        assert 'data-p="' in span and 'title="' in span and "data-ratio=" in span
    # block boundaries are marked
    assert out.count("block-start") == len({s.block for s in pj.steps}) - 1
    decisions = {s.decision for s in pj.steps}
    assert decisions <= {"accepted", "resampled", "bonus"}


def test_resampled_token_carries_rejected_draft(pj):
    resampled = [s for s in pj.steps if s.decision == "resampled"]
    assert resampled, "the tiny model should reject at least one draft with seed 3"
    span = render.token_span(resampled[0])
    assert "data-rejected=" in span and "data-rejected-p=" in span and "rejected draft" in span


def _step(text, **kw):
    base = dict(index=0, token_id=1, text=text, p=0.5, q=0.25, decision="resampled", block=2, drafter="A", u=0.9,
                rejected_token_id=2, rejected_text=text, rejected_p=0.1, rejected_q=0.4)
    base.update(kw)
    return Step(**base)


@pytest.mark.parametrize("evil", EVIL)
def test_model_output_is_escaped(evil):
    out = render.tokens_html([_step(evil)])
    assert "<script" not in out and "<img" not in out
    assert html.escape(evil, quote=True) in out
    # No attribute can be broken out of: every quote inside values is escaped.
    tag = re.match(r"<div[^>]*><span([^>]*)>", out).group(1)
    assert 'onerror="' not in tag and "onmouseover=" not in tag.replace("onmouseover=&#x27;", "")
    # the text round-trips when unescaped
    assert evil in html.unescape(out)


def test_placeholder_and_running_cursor():
    assert "pj-placeholder" in render.tokens_html([])
    assert "pj-cursor" in render.tokens_html([_step("x")], running=True)
    assert "pj-cursor" not in render.tokens_html([_step("x")])


def test_bonus_token_has_no_q():
    span = render.token_span(_step("z", decision="bonus", q=None, u=None, rejected_text=None))
    assert 'data-q=""' in span and "tok-bonus" in span and "no draft" in span


def test_ratio_and_shade_edges():
    assert render.ratio(_step("a", q=0.0)) == math.inf
    assert render.shade(_step("a", p=0.9, q=0.3)) == 1.0
    assert 0.25 <= render.shade(_step("a", p=0.0, q=0.3)) < 0.3


def test_legend_in_plain_words():
    text = re.sub("<[^>]+>", "", render.legend_html())
    for word in ("accepted", "resampled", "bonus", "persona A drafted", "Hover"):
        assert word in text


def test_stats_html(pj, tiny_lm):
    out = render.stats_html(pj.stats, {"tokens_per_s": 12.3, "new_tokens": 5, "forward_passes": 5})
    assert "Acceptance" in out and "12.3 tok/s" in out
    assert f"{100 * pj.stats['acceptance_rate']:.0f}%" in out
    assert "–" in render.stats_html(None)


def test_message_html_escapes():
    assert "&lt;b&gt;" in render.message_html("<b>bad</b>", "error")
    assert 'role="alert"' in render.message_html("x", "error")


def test_record_roundtrip(pj, tmp_path):
    path = records.write_record(records.run_record(pj, None, {"model": "tiny"}), tmp_path)
    data = json.loads(open(path, encoding="utf-8").read())
    assert data["persona_judge"]["token_ids"] == pj.token_ids and data["direct"] is None
    assert len(data["persona_judge"]["steps"]) == len(pj.steps)
