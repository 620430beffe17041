"""Independent meters: the numbers, offline, the personas they measure, `eval meters` (win rates,
validity) and the paper's Table 2 layout in `eval report` and `table2`."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from pjudge_core.cli import main
from pjudge_core.errors import InputError
from pjudge_core.evaluation import meters as M
from pjudge_core.evaluation.meters.runs import score_meter_runs
from pjudge_core.evaluation.meters.validity import sentiment_agreement, validate_pairs
from pjudge_core.evaluation.reports.table2 import combinations
from pjudge_core.evaluation.reports.wins import paired_outcomes, win_rates
from pjudge_core.evaluation.self_judge.alignment import load_pairs
from pjudge_core.presets import load_presets, presets

SAMPLE = ROOT / "data" / "psoups_student_phd_sample.json"
PSOUPS = {"elementary": ("flesch_kincaid_grade", "lower"), "PhD": ("flesch_kincaid_grade", "higher"),
          "concise": ("words", "lower"), "detailed": ("words", "higher"),
          "friendly": ("vader_compound", "higher"), "unfriendly": ("vader_compound", "lower")}
SIMPLE = "The cat sat on the mat. It was a big cat. The cat was glad."
HARD = ("Quantum chromodynamics characterises the non-abelian interactions between quarks and gluons, "
        "whose asymptotic freedom necessitates perturbative renormalisation.")


# --------------------------------------------------------------------------- the meters

def test_the_meters_measure_reading_level_length_and_sentiment():
    simple, hard = M.measure(SIMPLE), M.measure(HARD)
    assert set(simple) == {"flesch_kincaid_grade", "words", "vader_compound", "words_per_line"}
    assert simple["flesch_kincaid_grade"] < 3 < 15 < hard["flesch_kincaid_grade"]
    assert M.words("Don't stop, well-known friend!") == 4 and simple["words"] == 15
    assert M.vader_compound("You are wonderful, thanks so much!") > 0.5
    assert M.vader_compound("Go away, that is a stupid question.") < -0.3
    assert M.measure("") == {"flesch_kincaid_grade": None, "words": 0, "vader_compound": 0.0, "words_per_line": None}
    assert M.words_per_line("Roses are red,\n\n  violets are blue;\nsugar is sweet") == 3.0
    assert simple["words_per_line"] == simple["words"]  # one line
    assert M.measure(SIMPLE, ["words"]) == {"words": 15}
    with pytest.raises(InputError, match="Unknown meter 'grade'"):
        M.measure(SIMPLE, ["grade"])
    with pytest.raises(InputError, match="measures text"):
        M.measure(None)


def test_the_app_shows_the_meters_with_the_library_names():
    values = {"flesch_kincaid_grade": 8.13, "words": 54, "vader_compound": 0.6249}
    assert M.format_meters(values) == "grade 8.1 · 54 words · sentiment +0.62"
    assert M.format_meters({"flesch_kincaid_grade": None, "words": 0, "vader_compound": -0.5}) == \
        "grade – · 0 words · sentiment −0.50"


def test_the_meters_run_offline_without_nltk(tmp_path):
    """A fresh process in which opening any network connection raises: the dictionaries load from
    the installed packages, and NLTK (whose downloader newer textstat releases call) is never imported."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise SystemExit('network access: ' + repr(a))\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from pjudge_core.evaluation.meters import measure\n"
        "values = measure('Photosynthesis converts light into chemical energy. Plants love it!')\n"
        "assert values['flesch_kincaid_grade'] > 5 and values['words'] == 9 and values['vader_compound'] > 0, values\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'nltk'], 'nltk was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
                                  NLTK_DATA=str(tmp_path / "no-nltk-data")))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# --------------------------------------------------------------------------- personas with a meter

def test_the_six_psoups_personas_and_the_two_form_personas_name_their_meter_and_direction():
    targets = M.preset_targets()
    assert {name: (t.meter, t.direction) for name, t in targets.items()} == {
        **PSOUPS, "poem": ("words_per_line", "lower"), "one sentence": ("words", "lower")}
    assert M.target_of(name="concise").sign == -1 and M.target_of(name="detailed").sign == 1
    text = presets().personas["PhD"].text
    assert M.target_of(text + "  ").persona == "PhD"  # matched by exact text (surrounding space aside)
    assert M.target_of("Be concise.") is None and M.target_of(name="vivid") is None
    labels = M.persona_targets({"A": presets().personas["friendly"].text, "B": "be vivid"}, names={"B": "concise"})
    assert {label: t.persona for label, t in labels.items()} == {"A": "friendly", "B": "concise"}


def test_a_preset_meter_must_be_known_and_have_a_direction(tmp_path):
    def write(meter):
        (tmp_path / "personas.json").write_text(json.dumps(
            {"personas": {"short": {"text": "Be short.", "meter": meter}}}), encoding="utf-8")

    write({"name": "word_count", "direction": "lower"})
    with pytest.raises(InputError, match="persona 'short': meter 'word_count' is not a known meter"):
        M.preset_targets(tmp_path)
    write({"name": "words", "direction": "down"})
    with pytest.raises(InputError, match="personas.json, persona 'short', field 'meter.direction'"):
        load_presets(tmp_path)


# --------------------------------------------------------------------------- win rates

def test_win_rates_count_ties_half_or_zero_with_wilson_intervals():
    d = win_rates([1, 1, 1, 0, -1])
    assert (d["wins"], d["ties"], d["losses"], d["n"]) == (3, 1, 1, 5)
    assert d["rate"] == pytest.approx(0.6) and d["rate_half"] == pytest.approx(0.7)
    assert d["low"] < 0.6 < d["high"] and d["low_half"] < 0.7 < d["high_half"]
    assert win_rates([])["rate"] is None


def test_outcomes_pair_each_spec_with_the_baseline_on_the_same_run_and_prompt():
    scores = [{"run": r, "id": i, "spec": s, "objective": "concise", "score": v}
              for r, i, s, v in [(0, "1", "pj", 2.0), (0, "1", "direct", 1.0), (1, "1", "pj", 1.0),
                                 (1, "1", "direct", 3.0), (0, "2", "pj", 5.0), (0, "2", "direct", 5.0),
                                 (0, "3", "pj", 9.0), (0, "4", "direct", 1.0), (0, "5", "pj", None),
                                 (0, "5", "direct", 1.0)]]
    assert paired_outcomes(scores, "direct") == {"pj": {"concise": [1, -1, 0]}}


def run_records(path, prefs, texts, cut=()):
    """A batch output: {spec: [answer per prompt]} with the run's preferences, as run_batch writes it."""
    with open(path, "w", encoding="utf-8") as fh:
        for spec, answers in texts.items():
            for i, text in enumerate(answers):
                stats = {"new_tokens": 10, "stopped_by": "max_new_tokens" if (spec, i) in cut else "eos"}
                fh.write(json.dumps({"id": str(i), "prompt": f"Question {i}?", "spec": spec, "method": spec,
                                     "text": text, "settings": {}, "stats": stats,
                                     "run": {"model": "m", "preferences": prefs, "settings": {}}}) + "\n")
    return path


def psoups(*names):
    return {label: presets().personas[name].text for label, name in zip("ABC", names)}


@pytest.fixture
def two_runs(tmp_path):
    """Two persona combinations; Persona-judge's answers are shorter and friendlier in the first."""
    first = run_records(tmp_path / "a.jsonl", psoups("elementary", "concise", "friendly"), {
        "persona-judge": ["Yes! Great, I love it.", "Sure, thanks friend!", "It is good."],
        "direct": ["Well, let me explain this at some length now.", "This is an answer that goes on.",
                   "It is good."]}, cut={("direct", 0)})
    second = run_records(tmp_path / "b.jsonl", psoups("PhD", "detailed", "unfriendly"), {
        "persona-judge": ["No.", "I hate this stupid question, go away.", "Fine."],
        "direct": ["The answer, in some detail, follows here.", "Okay.", "Fine, whatever you want."]})
    return first, second


def test_eval_meters_pools_runs_and_compares_each_persona_with_direct(two_runs, capsys):
    from pjudge_core.evaluation.runs.records import load_records

    result = score_meter_runs([(str(p), load_records(p)) for p in two_runs])
    concise, detailed = result["wins"]["concise"]["persona-judge"], result["wins"]["detailed"]["persona-judge"]
    assert (concise["wins"], concise["ties"], concise["losses"]) == (2, 1, 0)
    assert (detailed["wins"], detailed["losses"]) == (1, 2)
    friendly, unfriendly = result["wins"]["friendly"]["persona-judge"], result["wins"]["unfriendly"]["persona-judge"]
    assert (friendly["wins"], friendly["ties"]) == (2, 1) and unfriendly["wins"] >= 1
    assert set(result["objectives"]) == set(PSOUPS) and result["by_spec"]["direct"]["cut_by_budget"]["count"] == 1
    assert result["by_spec"]["persona-judge"]["words"]["n"] == 6

    assert main(["eval", "meters", "--in", *map(str, two_runs), "--json", "--all"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["wins"]["concise"]["persona-judge"]["wins"] == 2 and len(data["rows"]) == 12
    assert set(data["rows"][0]["meters"]) == set(M.METERS) and data["seconds_per_100"] > 0
    assert main(["eval", "meters", "--in", str(two_runs[0])]) == 0
    text = capsys.readouterr().out
    assert "concise (words lower): persona-judge vs direct: W/T/L 2/1/0 of 3" in text
    assert "cut by the token budget 1/3" in text
    assert main(["eval", "meters"]) == 2
    assert "Pass --in FILE" in capsys.readouterr().err


def test_records_of_runs_without_personas_have_meters_but_no_win_rates(records_file, capsys):
    assert main(["eval", "meters", "--in", str(records_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["wins"] == {} and data["by_spec"]["persona-judge"]["words"]["n"] == 4


# --------------------------------------------------------------------------- validity

def test_the_grade_ranks_phd_answers_above_elementary_ones_on_the_shipped_pairs():
    """The shipped sample of P-Soups student/PhD users: the grade sides with the user far above chance."""
    result = validate_pairs(load_pairs(SAMPLE))
    grade = result["by_meter"]["flesch_kincaid_grade"]
    assert grade["n"] == 60 and result["unmatched"] == 0
    assert grade["low"] > 0.5, grade  # the 95% Wilson interval excludes chance
    assert set(result["by_persona"]) == {"elementary", "PhD"} and result["distinct"]["n"] <= 60
    swapped = validate_pairs([{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in load_pairs(SAMPLE)])
    assert swapped["by_meter"]["flesch_kincaid_grade"]["accuracy"] == pytest.approx(1 - grade["accuracy"])


def test_validate_counts_repeated_pairs_once_under_distinct():
    pair = {"prompt": "Why?", "chosen": HARD, "rejected": SIMPLE,
            "ground_truth_persona": presets().personas["PhD"].text}
    result = validate_pairs([pair, pair, {**pair, "ground_truth_persona": "Be vivid."}])
    assert result["by_meter"]["flesch_kincaid_grade"]["n"] == 2 and result["unmatched"] == 1
    assert result["distinct"]["by_meter"]["flesch_kincaid_grade"]["n"] == 1


def test_sentiment_agreement_with_human_ratings(tmp_path, capsys):
    ratings = tmp_path / "ratings.txt"
    ratings.write_text("1\t3.1\tI love this, it is wonderful!\n2\t-2.8\tThis is awful and I hate it.\n"
                       "3\t0.2\tThe train leaves at noon.\n4\t2.0\tNice work, thanks.\n5\t-1.5\tBad idea.\n",
                       encoding="utf-8")
    result = sentiment_agreement(ratings)
    assert result["n"] == 5 and result["pearson"]["r"] > 0.8 and result["sign"] == pytest.approx(
        {"n": 4, "agree": 4, "rate": 1.0, "low": result["sign"]["low"], "high": 1.0})
    bad = tmp_path / "bad.txt"
    bad.write_text("1\tvery\tgood\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1 is not 'id <tab> mean rating <tab> text'"):
        sentiment_agreement(bad)
    assert main(["eval", "meters", "--validate", "--pairs", str(SAMPLE), "--sentiment-truth", str(ratings)]) == 0
    text = capsys.readouterr().out
    assert "flesch_kincaid_grade: ranks the chosen answer the persona's way in 0.850" in text
    assert "vader_compound vs human ratings" in text


# --------------------------------------------------------------------------- the paper's layout

def test_report_of_several_runs_has_a_win_rate_table_per_signal(two_runs, tmp_path, capsys):
    fit = {"kind": "fit", "model": "m", "same_model": True, "labels": ["A", "B", "C"],
           "preferences": psoups("elementary", "concise", "friendly"), "by_spec": {}, "beats_baseline": {},
           "scores": [{"id": "0", "spec": "persona-judge", "mean": {"A": 0.5, "B": 0.0, "C": 0.1}},
                      {"id": "0", "spec": "direct", "mean": {"A": 0.2, "B": 0.0, "C": 0.3}},
                      {"id": "1", "spec": "persona-judge", "mean": {"A": 0.9, "B": 0.9, "C": 0.9}}]}
    judge = {"kind": "judge", "judge": "big-judge", "metric": "judge big-judge", "aspect": "friendly",
             "a": "persona-judge", "b": "direct", "n": 2, "per_prompt": [{"outcome": "win"}, {"outcome": "tie"}],
             **{k: {"count": 1, "rate": 0.5, "low": 0.1, "high": 0.9} for k in ("win", "tie", "loss")}}
    for name, data in (("fit.json", fit), ("judge.json", judge)):
        (tmp_path / name).write_text(json.dumps(data), encoding="utf-8")
    md = tmp_path / "r.md"
    assert main(["eval", "report", "--in", *map(str, two_runs), "--scores", str(tmp_path / "fit.json"),
                 str(tmp_path / "judge.json"), "--out-md", str(md), "--out-html", str(tmp_path / "r.html")]) == 0
    text = md.read_text(encoding="utf-8")
    assert "| persona-judge | 6 |" in text and "the paper's Table 2 layout" in text
    assert "### words (words; concise lower, detailed higher wins)" in text
    assert "| run spec | concise | detailed |" in text
    assert "| persona-judge | 0.67 [0.21, 0.94] 2/1/0 | 0.33 [0.06, 0.79] 1/0/2 |" in text
    fit_table = text.split("### Persona fit under m: the writer")[1]
    assert "| run spec | elementary | concise | friendly |" in fit_table  # prompt 1 has no direct answer
    assert "| persona-judge | 1.00 [0.21, 1.00] 1/0/0 | 0.00 [0.00, 0.79] 0/1/0 | 0.00 [0.00, 0.79] 0/0/1 |" in fit_table
    assert "| persona-judge | 0.50 [0.09, 0.91] 1/1/0 |" in text.split("### Pairwise judge big-judge")[1]
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Win rate against direct per objective" in html


def test_combinations_are_one_persona_per_psoups_dimension():
    combos = combinations("all")
    assert len(combos) == 8 and ("elementary", "concise", "friendly") in combos
    assert ("PhD", "detailed", "unfriendly") in combos
    assert combinations("PhD+concise+friendly") == [("PhD", "concise", "friendly")]
    with pytest.raises(InputError, match="Unknown persona 'clever'"):
        combinations("clever+concise+friendly")


def test_table2_runs_scores_and_reports_in_one_command(tiny_folder, tmp_path, capsys):
    out = tmp_path / "t2"
    args = ["table2", "--model", tiny_folder, "--limit", "2", "--max-new-tokens", "6", "--out-dir", str(out),
            "--combinations", "elementary+concise+friendly,PhD+detailed+unfriendly", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr()
    text = (out / "table2.md").read_text(encoding="utf-8")
    assert printed.out.strip() == text.strip()
    for title in ("### Flesch–Kincaid grade", "### words", "### VADER sentiment", "### Persona fit under"):
        assert title in text, title
    assert "| run spec | elementary | PhD | concise | detailed | friendly | unfriendly |" in text
    records = [json.loads(line) for line in (out / "PhD+detailed+unfriendly.jsonl").read_text().splitlines()]
    assert {r["spec"] for r in records} == {"persona-judge", "direct"} and len(records) == 4
    assert records[0]["run"]["preferences"] == psoups("PhD", "detailed", "unfriendly")
    assert records[0]["settings"]["max_new_tokens"] == 6
    assert json.loads((out / "fit-elementary+concise+friendly.json").read_text())["same_model"] is True
    fit_time = (out / "fit-elementary+concise+friendly.json").stat().st_mtime_ns
    # a rerun resumes: nothing is generated or scored again, the same table comes out
    assert main(args) == 0
    assert (out / "table2.md").read_text(encoding="utf-8") == text
    assert (out / "fit-elementary+concise+friendly.json").stat().st_mtime_ns == fit_time
    capsys.readouterr()
    assert main([*args[:-1], "--specs", "persona-judge"]) == 2
    assert "must include the baseline 'direct'" in capsys.readouterr().err


def test_table2_adds_a_judge_table_when_a_judge_model_is_given(tiny_folder, tmp_path, capsys):
    out = tmp_path / "t2"
    assert main(["table2", "--model", tiny_folder, "--limit", "2", "--max-new-tokens", "4", "--out-dir", str(out),
                 "--combinations", "PhD+concise+friendly", "--no-fit", "--judge", tiny_folder, "--quiet"]) == 0
    text = (out / "table2.md").read_text(encoding="utf-8")
    judged = text.split("### Pairwise judge")[1]
    assert "| run spec | PhD | concise | friendly |" in judged and "Persona fit under" not in text
    verdict = json.loads((out / "judge-PhD+concise+friendly-friendly-persona-judge.json").read_text())
    assert verdict["aspect"] == presets().personas["friendly"].text and verdict["n"] == 2
    assert main(["table2", "--model", tiny_folder, "--fit-model", tiny_folder, "--out-dir", str(out)]) == 2
    assert "--fit-model names the writing model" in capsys.readouterr().err


@pytest.mark.slow
def test_table2_on_the_bundled_model(bundled_lm, tmp_path):
    """Two combinations x 2 koala prompts x 16 tokens: English answers, so every meter has a value,
    and the table's words cell is the count of the records' own word comparisons."""
    from pjudge_core import DecodeSettings
    from pjudge_core.cli.table2 import reproduce
    from pjudge_core.evaluation.runs.records import load_records, read_prompts

    combos = combinations("elementary+concise+friendly,PhD+detailed+unfriendly")
    result = reproduce(bundled_lm, read_prompts(ROOT / "data" / "koala_eval_50.json")[:2], tmp_path, combos=combos,
                       specs="persona-judge,direct", decode=DecodeSettings(max_new_tokens=16, seed=0,
                                                                           repetition_penalty=1.1), progress=False)
    records = load_records(tmp_path / "elementary+concise+friendly.jsonl")
    assert all(M.measure(r["text"])["flesch_kincaid_grade"] is not None for r in records)
    words = {(r["id"], r["spec"]): M.words(r["text"]) for r in records}
    wins = sum(words[(i, "persona-judge")] < words[(i, "direct")] for i in ("0", "1"))
    ties = sum(words[(i, "persona-judge")] == words[(i, "direct")] for i in ("0", "1"))
    concise = result["markdown"].split("| run spec | concise | detailed |")[1].splitlines()[2]
    assert concise.split("|")[2].strip().endswith(f"{wins}/{ties}/{2 - wins - ties}")
    assert "### Persona fit under SmolLM2-135M-Instruct" in result["markdown"]
    assert set(result["timings"]) == {"generate", "fit", "report"}
