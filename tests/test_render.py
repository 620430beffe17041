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
    for word in ("accepted", "resampled", "bonus", "sampled", "fused", "the persona that drafted the block", "Hover"):
        assert word in text


def test_panel_footer_gives_tokens_speed_acceptance_per_drafter_and_repetition(pj):
    out = render.panel_html("Persona-judge", "about <it>", pj.steps, stats=pj.stats)
    assert "Persona-judge" in out and "about &lt;it&gt;" in out
    foot = re.search(r'<div class="pj-panel-foot">([^<]*)</div>', out).group(1)
    assert f"{len(pj.steps)} tokens" in foot and "tok/s" in foot and "repeated 4-grams" in foot
    assert f"acceptance {100 * pj.stats['acceptance_rate']:.0f}%" in foot and "A drafts" in foot and "B drafts" in foot
    assert "pj-panel-foot" not in render.panel_html("Direct", "", [])  # no footer before the first token


def test_fusion_tokens_show_every_personas_probability_and_who_liked_them_most():
    step = Step(index=0, token_id=5, text="sun", p=0.4, q=None, decision="fused",
                persona_p={"A": 0.1, "B": 0.6, "C": 0.05})
    span = render.token_span(step, persona_names={"A": "vivid", "B": "<creative>"})
    assert "tok-fused" in span and "drafter-B" in span
    assert 'data-persona-p="A=0.1 B=0.6 C=0.05"' in span
    assert "B (&lt;creative&gt;)=0.6" in span and "<creative>" not in span


def test_three_persona_titles_name_the_drafter_and_the_judge():
    step = _step("x", drafter="C", judge="A")
    title = render.token_title(step, {"A": "vivid", "C": "funny"})
    assert "drafted by C (funny), judged by A (vivid)" in title
    assert "drafter-C" in render.token_span(step)


def test_message_html_escapes():
    assert "&lt;b&gt;" in render.message_html("<b>bad</b>", "error")
    assert 'role="alert"' in render.message_html("x", "error")


def test_record_is_compact_json_with_every_panel(pj, tmp_path):
    panel = records.panel_record("persona-judge", "persona-judge", "Persona-judge", pj, pj.steps)
    stopped = records.panel_record("direct", "direct", "Direct prompting", None, pj.steps[:3], stopped=True)
    record = records.lab_record(model="tiny", query="q", personas={"A": {"name": "x", "text": "be x"}},
                                settings={"seed": 3}, panels=[panel, stopped])
    path = records.write_record(record, tmp_path)
    raw = open(path, encoding="utf-8").read()
    assert "\n" not in raw and ": " not in raw[:200]  # no indentation, no padding
    data = json.loads(raw)
    first, second = data["panels"]
    assert first["token_ids"] == pj.token_ids and first["finished"] and len(first["steps"]) == len(pj.steps)
    assert all(v is not None for s in first["steps"] for v in s.values())  # empty fields are left out
    assert second["finished"] is False and second["token_ids"] == pj.token_ids[:3]
