"""The meters in the app, without a browser: the panel's line, the fit naming its scorer, and a
front whose axes are meters."""

import json

import pytest

from pjudge_core import DecodeSettings
from pjudge_core.errors import InputError
from pjudge_core.evaluation.meters import measure
from pjudge_core.evaluation.runs.compare import compare
from pjudge_core.evaluation.self_judge.fit import persona_fit
from pjudge_core.ui import charts, render
from pjudge_core.ui.tabs.did_it_work import DidItWorkTab

QUERY = "Describe a sunset."
PREFS = {"A": "be vivid", "B": "be <b>bold</b>"}


def test_a_panel_shows_its_meters_under_library_names_escaped():
    html = render.meters_html({"flesch_kincaid_grade": 8.13, "words": 54, "vader_compound": 0.6249})
    assert ">grade 8.1</span> · <span" in html and ">54 words<" in html and ">sentiment +0.62<" in html
    for name in ("flesch_kincaid_grade", "words", "vader_compound"):
        assert f'data-meter="{name}"' in html
    assert 'data-value="0.6249"' in html and "English only" in html
    assert render.meters_html(None) == "" and render.meters_html({}) == ""
    empty = render.meters_html(measure(""))
    assert 'data-value=""' in empty and "grade –" in empty


def test_the_fit_line_and_heatmap_name_the_model_that_scored_them(tiny_lm):
    fit = persona_fit(tiny_lm, QUERY, "a sunset", PREFS)
    html = render.fit_html(fit, persona_names={"A": "vivid"}, model="<b>x</b>/model")
    assert 'data-model="&lt;b&gt;x&lt;/b&gt;/model"' in html and "Persona fit under &lt;b&gt;x&lt;/b&gt;/model, nats/token:" in html
    assert "Persona fit under tiny: empty answer" in render.fit_html(None, "empty answer", model="tiny")
    figure = charts.fit_heatmap_figure({"Direct": fit}, model="tiny-llama")
    assert "Persona fit per token under tiny-llama" in figure.layout.title.text


def test_a_front_axis_can_be_a_meter(tiny_lm):
    result = compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2,
                     settings=DecodeSettings(max_new_tokens=8, seed=1))
    figure = charts.front_figure(result, "words", "A")
    points = [t for t in figure.data if t.name == "persona-judge"][0]
    answers = [a for a in result["answers"] if a["spec"] == "persona-judge" and a["mean"]]
    assert list(points.x) == [measure(a["text"])["words"] for a in answers]
    assert list(points.y) == [a["mean"]["A"] for a in answers]
    mean = [t for t in figure.data if t.name == "persona-judge mean (95% CI)"][0]
    assert mean.x[0] == pytest.approx(sum(points.x) / len(points.x))
    assert "words (words)" in figure.layout.xaxis.title.text and "meters" in figure.layout.title.text
    both = charts.front_figure(result, "flesch_kincaid_grade", "vader_compound")
    assert "VADER sentiment" in both.layout.yaxis.title.text
    with pytest.raises(InputError, match="Pick two different axes"):
        charts.front_figure(result, "words", "words")
    with pytest.raises(InputError, match="meters \\(flesch_kincaid_grade, words, vader_compound, words_per_line\\)"):
        charts.front_figure(result, "A", "grade")
    json.dumps(both.to_plotly_json(), default=str)  # serialisable for the page


def test_the_axis_choices_are_the_personas_fits_then_the_meters():
    values = [value for _, value in DidItWorkTab.axis_choices(3)]
    assert values == ["A", "B", "C", "flesch_kincaid_grade", "words", "vader_compound", "words_per_line"]
    x, _ = DidItWorkTab.axes_choices(2)
    assert ("fit under B", "B") in x["choices"] and ("sentiment (vader_compound)", "vader_compound") in x["choices"]
