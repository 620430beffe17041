"""The lab's insight section without a browser: panel fits, the fit heatmap, the front's scores,
example pairs from a table or JSON, the bundled users, and their HTML."""

import dataclasses
import json
import threading
import time

import pytest

from pjudge_core import DecodeSettings, generate
from pjudge_core.errors import InputError
from pjudge_core.evaluation.runs.compare import compare
from pjudge_core.evaluation.self_judge.fit import persona_fit
from pjudge_core.evaluation.self_judge.inference import candidate_texts
from pjudge_core.ui import charts, insight, records, render
from pjudge_core.ui.tabs.infer import InferTab

QUERY = "Describe a sunset."
PREFS = {"A": "be vivid", "B": "be <b>bold</b>"}


def test_panel_fit_scores_the_answer_without_its_end_of_sequence_token(tiny_lm):
    result = generate(tiny_lm, "persona-judge", QUERY, PREFS, DecodeSettings(max_new_tokens=40, seed=3))
    eos = next(iter(tiny_lm.eos_token_ids))
    ended = dataclasses.replace(result, token_ids=list(result.token_ids) + [eos])
    fit, reason = insight.panel_fit(tiny_lm, QUERY, PREFS, ended)
    assert reason == "" and fit.token_ids == list(result.token_ids)
    direct = persona_fit(tiny_lm, QUERY, list(result.token_ids), PREFS)
    assert fit.mean == pytest.approx(direct.mean, abs=1e-6) and fit.labels == ["A", "B"]


def test_panel_fit_of_an_empty_answer_says_why(tiny_lm):
    result = generate(tiny_lm, "direct", QUERY, PREFS, DecodeSettings(max_new_tokens=4, seed=0))
    empty = dataclasses.replace(result, token_ids=[next(iter(tiny_lm.eos_token_ids))])
    assert insight.panel_fit(tiny_lm, QUERY, PREFS, empty) == (None, "empty answer: nothing to score")


def test_fits_asked_for_while_one_is_scored_are_scored_together_and_equal_lone_fits(tiny_lm, monkeypatch):
    results = [generate(tiny_lm, "persona-judge", QUERY, PREFS, DecodeSettings(max_new_tokens=12, seed=s))
               for s in range(3)] + [generate(tiny_lm, "direct", QUERY, {"A": "be brief"},
                                              DecodeSettings(max_new_tokens=12, seed=5))]
    alone = [insight.panel_fit(tiny_lm, QUERY, PREFS, r) for r in results[:3]]
    alone.append(insight.panel_fit(tiny_lm, QUERY, {"A": "be brief"}, results[3]))
    scoring, calls, others_wait = insight.FitScoring(), [], threading.Event()
    real = insight.answer_fits

    def answer_fits(lm, answers, preferences, **kwargs):
        calls.append((len(answers), dict(preferences)))
        if len(calls) == 1:  # the first visitor's scoring lasts until the others have asked
            assert others_wait.wait(30)
        return real(lm, answers, preferences, **kwargs)

    monkeypatch.setattr(insight, "answer_fits", answer_fits)
    got = [None] * 4

    def visitor(i):
        got[i] = scoring.fit(tiny_lm, QUERY, {"A": "be brief"} if i == 3 else PREFS, results[i])

    first = threading.Thread(target=visitor, args=(0,))
    first.start()
    while not calls:
        time.sleep(0.01)
    others = [threading.Thread(target=visitor, args=(i,)) for i in (1, 2, 3)]
    for t in others:
        t.start()
    while len(scoring._pending) < 3:
        time.sleep(0.01)
    others_wait.set()
    for t in [first, *others]:
        t.join(60)
    # One call for the first; then one per persona set for the three that waited together.
    assert sorted(n for n, _ in calls) == [1, 1, 2] and calls[0] == (1, PREFS)
    for (fit, reason), (lone, lone_reason) in zip(got, alone):
        assert reason == lone_reason == "" and fit.token_ids == lone.token_ids
        for label in fit.labels:
            assert fit.per_token[label] == pytest.approx(lone.per_token[label], abs=1e-4)


def test_a_failed_scoring_is_raised_in_the_visitor_whose_answer_failed_and_no_other(tiny_lm, monkeypatch):
    result = generate(tiny_lm, "direct", QUERY, PREFS, DecodeSettings(max_new_tokens=6, seed=1))
    real = insight.answer_fits

    def answer_fits(lm, answers, preferences, **kwargs):
        if any(query == "bad" for query, _ in answers):
            raise InputError("scoring broke")
        return real(lm, answers, preferences, **kwargs)

    monkeypatch.setattr(insight, "answer_fits", answer_fits)
    with pytest.raises(InputError, match="scoring broke"):
        insight.FitScoring().fit(tiny_lm, "bad", PREFS, result)
    # Scored together, the failing answer fails alone: its neighbour still gets its fit.
    ids = insight.answer_ids(tiny_lm, result)
    bad, good = insight._Asked(tiny_lm, "bad", PREFS, ids), insight._Asked(tiny_lm, QUERY, PREFS, ids)
    insight.FitScoring._score([bad, good])
    assert bad.done and isinstance(bad.error, InputError) and bad.fit is None
    assert good.done and good.error is None and good.fit.token_ids == ids


def test_fit_heatmap_has_a_subplot_per_answer_and_a_row_per_persona(tiny_lm):
    fit = persona_fit(tiny_lm, QUERY, "<img src=x> a sunset", PREFS)
    figure = charts.fit_heatmap_figure({"Persona-judge": fit, "Direct": fit}, {"A": "vivid"})
    assert len(figure.data) == 2
    first = figure.data[0]
    assert list(first.y) == ["A vivid", "B"]
    assert [list(row) for row in first.z] == [fit.per_token["A"], fit.per_token["B"]]
    assert "<img" not in json.dumps(figure.to_plotly_json()["data"])  # plotly reads hover text as markup
    assert figure.layout.coloraxis.cmid == 0


def test_fit_heatmap_before_any_answer_says_so():
    figure = charts.fit_heatmap_figure({})
    assert not figure.data and "no finished answer" in figure.layout.annotations[0].text


def test_front_is_drawn_from_a_compare_result(tiny_lm):
    settings = DecodeSettings(max_new_tokens=8, seed=1)
    result = compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2, settings=settings)
    scores = charts.front_scores(result)
    assert [s["spec"] for s in scores["scores"]] == ["persona-judge", "direct", "persona-judge", "direct"]
    assert scores["preferences"]["B"] == "be &lt;b&gt;bold&lt;/b&gt;"
    figure = charts.front_figure(result, "A", "B")
    points = [t for t in figure.data if t.name == "persona-judge"][0]
    assert list(points.x) == [a["mean"]["A"] for a in result["answers"] if a["spec"] == "persona-judge"]
    with pytest.raises(InputError, match="Pick two different axes: personas among A, B"):
        charts.front_figure(result, "A", "A")
    html = render.front_summary_html(result)
    assert 'data-spec="persona-judge"' in html and "baseline" in html


def test_table_rows_become_pairs_and_blank_rows_are_ignored():
    rows = [["Hi?", "Hello!", "Go away."], ["", "", ""], [None, None, None], ["Why?", "Because.", "No."]]
    assert insight.pairs_from_rows(rows) == [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."},
                                             {"prompt": "Why?", "chosen": "Because.", "rejected": "No."}]
    assert insight.pairs_from_rows({"headers": ["prompt", "chosen", "rejected"], "data": rows[:1]})[0]["prompt"] == "Hi?"


@pytest.mark.parametrize("rows, message", [
    ([], "There are no example pairs yet"),
    ([["", "", ""]], "There are no example pairs yet"),
    ([["Hi?", "Hello!", " "]], "Row 1 of the example pairs has an empty 'rejected' cell"),
    ([["Hi?", "Hello!"]], "Row 1 of the example pairs has 2 cells"),
    ("prompt,chosen,rejected", "must be a table"),
    ([["a", "b", "c"]] * 101, "101 pairs; 100 at most"),
])
def test_malformed_table_rows_are_one_sentence(rows, message):
    with pytest.raises(InputError, match=message):
        insight.pairs_from_rows(rows)


def test_json_pairs_a_user_record_and_its_truth():
    pairs = [{"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away.", "ground_truth_persona": "be kind"}]
    assert insight.pairs_from_json(json.dumps(pairs)) == ([{"prompt": "Hi?", "chosen": "Hello!",
                                                            "rejected": "Go away."}], "be kind")
    record = {"ground_truth_persona": "be brief", "Pair-wise Comparative Feedback": pairs}
    assert insight.pairs_from_json(json.dumps(record))[1] == "be brief"


@pytest.mark.parametrize("text, message", [
    ("", "The JSON is empty"),
    ("[{", "not valid JSON: line 1, column 3"),
    ('{"prompt": "x"}', "expected a non-empty list"),
    ('[{"prompt": "x", "chosen": "y"}]', "pair 0 lacks a non-empty 'rejected'"),
    ('[{"Pair-wise Comparative Feedback": []}, {"Pair-wise Comparative Feedback": []}]', "holds 2 users"),
])
def test_malformed_json_is_one_sentence(text, message):
    with pytest.raises(InputError, match=message):
        insight.pairs_from_json(text)


def test_uploaded_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(InputError, match="not UTF-8"):
        insight.pairs_from_file(str(path))


def test_bundled_users_have_profiles_and_the_picker_hides_the_truth():
    users = insight.sample_users()
    assert len(users) == 60 and all(u["profile"] and u["pairs"] and u["truth"] for u in users)
    for (label, index), user in zip(insight.user_choices(), users):
        assert index == user["index"] and "elementary" not in label and "PhD" not in label
    truths = {u["truth"] for u in users}
    assert truths <= set(insight.candidates("psoups")) and len(truths) == 2
    assert insight.candidates("presets") is None and len(candidate_texts(None)) > 6
    with pytest.raises(InputError, match="no bundled P-Soups user 99"):
        insight.sample_user(99)


def test_inference_html_ranks_marks_the_truth_and_escapes():
    inference = {"best": "<b>x</b>", "pairs": 3, "model": "m", "skipped": [1],
                 "ranking": [{"text": "<b>x</b>", "name": "<b>x</b>", "score": -1.0},
                             {"text": "be kind", "name": "kind", "score": -3.5}]}
    html = render.inference_html(inference, truth="be kind")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert html.index('data-rank="1"') < html.index('data-rank="2"') and "✓ ground truth" in html
    assert "not this user&#x27;s ground truth" in html and "1 pair skipped" in html and "−2.50" in html


def test_fit_html_escapes_persona_names_and_explains_a_missing_fit(tiny_lm):
    fit = persona_fit(tiny_lm, QUERY, "a sunset", PREFS)
    html = render.fit_html(fit, persona_names={"A": "<i>vivid</i>"})
    assert "<i>" not in html and 'data-label="B"' in html
    assert "empty answer" in render.fit_html(None, "empty answer: nothing to score")


def test_the_best_candidate_goes_to_a_persona_with_its_preset_name():
    text = "Generate a response that only a PhD Student in that specific field could understand."
    assert InferTab.use_best({"best": text}) == ("PhD", text)
    assert InferTab.use_best({"best": "be terse"}) == (None, "be terse")


def test_front_and_inference_outlive_the_next_run():
    record = records.with_section(None, "inference", {"best": "x"}, model="m")
    assert record["inference"] == {"best": "x"} and record["panels"] == []
    record = records.with_section(record, "front", {"answers": []}, model="m")
    assert records.carried_over(record) == {"inference": {"best": "x"}, "front": {"answers": []}}
    assert records.carried_over(None) == {}
