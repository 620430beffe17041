"""Token HTML, legend, stats and run records as pure functions (tiny model; no browser)."""

import colorsys
import html
import json
import math
import re

import pytest
from conftest import ROOT

from pjudge_core import persona_judge
from pjudge_core.engine.personas import LABELS
from pjudge_core.engine.trace import Step
from pjudge_core.ui import charts, records, render
from pjudge_core.ui.tabs import about

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


# --------------------------------------------------------------------------- the About tab and "Did it work?"

CSS = (ROOT / "assets" / "style.css").read_text(encoding="utf-8")


def test_the_about_legend_uses_only_classes_the_stylesheet_defines():
    defined = set(re.findall(r"\.([A-Za-z][\w-]*)", CSS))
    used = {name for attr in re.findall(r'class="([^"]*)"', about.colours_html()) for name in attr.split()}
    assert {"tok-accepted", "tok-resampled", "tok-bonus", "drafter-A", "pane-title-d", "pj-msg-error"} <= used
    assert used <= defined, f"classes without a style: {used - defined}"


def css_colour(name: str) -> str:
    value = re.search(rf"--{name}:\s*([^;]+);", CSS).group(1).strip()
    if value.startswith("#"):
        return value.lower()
    return "#" + "".join(f"{int(part):02x}" for part in value.split(","))


def test_the_page_the_charts_and_the_about_text_agree_on_every_colour():
    for decision, var in (("accepted", "pj-acc"), ("resampled", "pj-res"), ("bonus", "pj-bon")):
        assert css_colour(var) == charts.COLORS[decision].lower(), decision
    hues = {"orange": (20, 45), "purple": (255, 290), "teal": (160, 190), "pink": (320, 350)}
    assert tuple(about.PERSONA_COLOURS) == LABELS
    for label, word in about.PERSONA_COLOURS.items():
        colour = css_colour(f"pj-{label.lower()}")
        assert colour == charts.DRAFTER_COLORS[label].lower(), label
        r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360
        assert hues[word][0] <= hue <= hues[word][1], f"persona {label} is called {word} but its hue is {hue:.0f}"
    # the fit heatmap's colour scale: red below 0, blue above, as the About text says
    red, blue = (tuple(int(x) for x in re.findall(r"\d+", c)) for c in (about.FIT_DOWN, about.FIT_UP))
    assert red[0] > red[2] and blue[2] > blue[0]
    scale = charts.fit_heatmap_figure({}).layout.coloraxis.colorscale
    assert scale[0][1] == "rgb(103,0,31)" and scale[-1][1] == "rgb(5,48,97)"  # plotly's RdBu, low to high


def test_the_about_tab_cites_the_paper():
    assert "arXiv:2504.12663" in about.CITATION and "https://arxiv.org/abs/2504.12663" in about.CITATION
    bibtex = about.CITATION.split("```bibtex")[1].split("```")[0]
    assert bibtex.count("{") == bibtex.count("}") and "Zhang, Xiaotian" in bibtex and "eprint    = {2504.12663}" in bibtex


def test_the_answers_table_is_escaped_and_bolds_the_best_fit_per_persona():
    evil = EVIL[1]
    record = {
        "personas": {"A": {"name": evil, "text": "a"}, "B": {"name": "", "text": "b"}},
        "panels": [{"slot": "persona-judge", "label": "Persona-judge"}, {"slot": "direct", "label": evil}],
        "fit": {"model": evil, "panels": {"persona-judge": {"mean": {"A": 0.5, "B": -0.25}},
                                          "direct": {"reason": "no tokens"}}},
        "meters": {"panels": {"persona-judge": {"flesch_kincaid_grade": 8.14, "words": 54, "vader_compound": -0.5,
                                                "words_per_line": 18.0},
                              "direct": {"flesch_kincaid_grade": None, "words": 0, "vader_compound": 0.0,
                                         "words_per_line": None}}},
    }
    out = render.answers_html(record)
    assert "<img" not in out and html.escape(evil, quote=True) in out
    rows = dict(re.findall(r'<tr data-slot="([^"]+)">(.*?)</tr>', out))
    assert re.findall(r"<td[^>]*>([^<]*)</td>", rows["persona-judge"])[1:] == ["+0.50", "−0.25", "8.1", "54", "−0.50", "18.0"]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", rows["direct"])[1:] == ["–", "–", "–", "0", "+0.00", "–"]
    assert rows["persona-judge"].count("pj-top") == 2  # the only answer with a fit is the best under A and B
    assert "Press Run" in render.answers_html(None) and "Press Run" in render.answers_html({"panels": []})
