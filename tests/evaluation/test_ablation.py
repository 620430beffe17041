"""The ablation: every method against no preference, the placebo and direct, per meter (`ablation`)."""

import json

import pytest

from pjudge_core.cli import main
from pjudge_core.errors import InputError
from pjudge_core.evaluation.reports import ablation as A
from pjudge_core.presets import presets

ELEMENTARY, CONCISE = presets().personas["elementary"].text, presets().personas["concise"].text
PAIR = {"A": ELEMENTARY, "B": CONCISE}


def record(pid, spec, words, cut=False):
    return {"id": pid, "spec": spec, "text": " ".join(["cat"] * words),
            "stats": {"stopped_by": "max_new_tokens" if cut else "eos"}}


def hand_built(words_by_spec: dict) -> tuple[list, list]:
    """A control run and a pair run whose answers have the given word counts per prompt."""
    controls = [record(i, key, n) for key in A.CONTROL_SPECS for i, n in enumerate(words_by_spec[A.CONTROL_SPECS[key]])]
    runs = [record(i, spec, n, cut=n >= 9) for spec in A.ROWS[2:] for i, n in enumerate(words_by_spec[spec])]
    return controls, runs


def test_each_spec_is_paired_with_no_preference_and_direct_in_the_meters_units():
    words = {row: [5, 6, 7, 8] for row in A.ROWS}
    words["direct[B]"] = [3, 4, 5, 6]  # concise alone: 2 words fewer on every prompt
    words["persona-judge"] = [4, 4, 6, 6]
    words["official"] = [9, 9, 9, 9]  # cut by the budget
    tables = A.pair_tables(*hand_built(words), PAIR)
    assert set(tables) == {"elementary", "concise"}  # both have a meter
    concise = tables["concise"]
    assert concise["meter"] == "words" and concise["direction"] == "lower"
    rows = concise["rows"]
    assert list(rows) == list(A.ROWS)
    alone = rows["direct[B]"]
    assert alone["vs_none"]["mean"] == pytest.approx(-2.0) and alone["vs_none"]["sd"] == 0
    assert alone["wins_vs_direct"]["wins"] == 4  # fewer words win for "concise"
    assert rows["official"]["cut"] == 1.0 and rows["direct"]["cut"] == 0.0
    assert rows["official"]["wins_vs_direct"]["losses"] == 4
    assert rows[A.NONE]["vs_none"] is None and rows["direct"]["vs_direct"] is None
    assert rows["persona-judge"]["vs_direct"]["mean"] == pytest.approx(-1.5)
    assert concise["pj_minus_official"]["mean"] == pytest.approx(5 - 9)
    assert concise["pj_minus_official"]["high"] < 0  # clearly fewer words than official, with an interval


def test_a_judges_win_rates_join_as_a_column():
    words = {row: [5, 6] for row in A.ROWS}
    judged = {"concise": {"persona-judge": {"wins": 2, "ties": 0, "losses": 0, "n": 2, "rate": 1.0, "low": 0.34,
                                            "high": 1.0}}}
    tables = A.pair_tables(*hand_built(words), PAIR, judged)
    assert tables["concise"]["rows"]["persona-judge"]["judge_vs_direct"]["rate"] == 1.0
    markdown = A.table_markdown(tables["concise"], ["elementary", "concise"])
    assert "judge wins vs direct" in markdown and "1.00 [0.34, 1.00]" in markdown
    assert "judge wins" not in A.table_markdown(A.pair_tables(*hand_built(words), PAIR)["concise"],
                                           ["elementary", "concise"])


def test_the_headline_gives_each_persona_its_own_alone_row_and_persona_judge_against_direct():
    words = {row: [5, 6, 7, 8] for row in A.ROWS}
    words["direct[A]"] = [6, 7, 8, 9]  # elementary alone: one word more (its meter is the grade, not words)
    words["direct[B]"] = [3, 4, 5, 6]  # concise alone: two words fewer
    words["persona-judge"] = [2, 3, 4, 5]  # three fewer than direct, on every prompt
    controls, runs = hand_built(words)
    modes = {"greedy": {"pairs": {"e+c": {"pair": ["elementary", "concise"],
                                          "tables": A.pair_tables(controls, runs, PAIR)}}}}
    concise = next(line for line in A.headline_markdown(modes).splitlines() if "concise (words, lower)" in line)
    cells = [c.strip() for c in concise.strip("|").split("|")]
    assert cells[0] == "greedy"
    assert cells[2] == "-2.0 [-2.0, -2.0]"  # B alone, not A alone
    assert cells[4] == "-3.0 [-3.0, -3.0]" and cells[5] == "-3.0 [-3.0, -3.0]"  # vs none, vs direct
    assert cells[6].endswith("4/0/0")  # fewer words win for "concise"


def test_acceptance_pools_the_judges_decisions_over_answers():
    records = [{"spec": "persona-judge", "stats": {"decisions": {"accepted": 3, "resampled": 1, "bonus": 2}}},
               {"spec": "persona-judge", "stats": {"decisions": {"accepted": 5, "resampled": 3, "bonus": 0}}},
               {"spec": "official", "stats": {"decisions": {"accepted": 0, "resampled": 9}}}]
    assert A.acceptance(records, "persona-judge") == pytest.approx(8 / 12)  # bonus tokens were never drafts
    assert A.acceptance(records, "fusion") is None


def test_rows_are_labelled_by_what_they_ran():
    assert A.row_label("direct[A]", ["poem", "one sentence"]) == "A alone (poem)"
    assert A.row_label("direct[B]", ["poem", "one sentence"]) == "B alone (one sentence)"
    assert A.row_label(A.PLACEBO, ["poem", "one sentence"]) == "placebo"
    assert A.row_label("fusion(alpha=0.5)", ["poem", "one sentence"]) == "Fusion (α=0.5)"


def test_the_command_runs_every_mode_and_pair_then_resumes_without_decoding_again(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text('[{"id": "1", "prompt": "Why is the sky blue?"}, {"id": "2", "prompt": "Explain rain."}]')
    out = tmp_path / "abl"
    args = ["ablation", "--model", tiny_folder, "--prompts", str(prompts), "--max-new-tokens", "6",
            "--pairs", "elementary+concise", "--out-dir", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == (out / "ablation.md").read_text().strip()
    assert "## sample: sampling" in printed and "## greedy: greedy" in printed
    assert printed.count("**elementary** wants Flesch–Kincaid grade lower") == 2
    assert "| placebo |" in printed and "persona-judge − official" in printed and "| persona |" in printed
    assert printed.count("| sample | elementary (Flesch–Kincaid grade, lower) |") == 1  # the headline's lines
    assert "judges accepted" in printed  # persona-judge's acceptance per pair
    runs = {p.name: p.read_text() for p in out.glob("*.jsonl")}
    assert set(runs) == {"sample-controls.jsonl", "sample-elementary+concise.jsonl", "greedy-controls.jsonl",
                         "greedy-elementary+concise.jsonl"}
    pair = [json.loads(line) for line in runs["sample-elementary+concise.jsonl"].splitlines()]
    assert len(pair) == 2 * len(A.PAIR_SPECS)
    greedy = [json.loads(line) for line in runs["greedy-controls.jsonl"].splitlines()]
    assert all(r["settings"]["greedy"] for r in greedy) and len(greedy) == 4
    result = json.loads((out / "ablation.json").read_text())
    assert result["modes"]["sample"]["cut"]["n"] == 4 + 2 * len(A.PAIR_SPECS)
    assert set(result["sensitivity"]["personas"]) == {"elementary", "concise"}

    (out / "sample-controls.jsonl").write_text("".join(runs["sample-controls.jsonl"].splitlines(True)[:2]))
    assert main(args) == 0  # an interrupted run continues: the missing answers only
    again = {p.name: p.read_text() for p in out.glob("*.jsonl")}
    assert again["sample-elementary+concise.jsonl"] == runs["sample-elementary+concise.jsonl"]

    def answers(text):  # the timings differ between runs, the answers not (the seed is per prompt)
        return sorted((r["id"], r["spec"], r["text"]) for r in map(json.loads, text.splitlines()))

    assert answers(again["sample-controls.jsonl"]) == answers(runs["sample-controls.jsonl"])


def test_a_judge_model_adds_its_column_and_its_verdicts_are_kept(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text('[{"id": "1", "prompt": "Why is the sky blue?"}, {"id": "2", "prompt": "Explain rain."}]')
    out = tmp_path / "abl"
    args = ["ablation", "--model", tiny_folder, "--judge", tiny_folder, "--prompts", str(prompts), "--modes", "greedy",
            "--max-new-tokens", "4", "--pairs", "poem+one sentence", "--out-dir", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("judge wins vs direct") == 2  # one column per persona's table
    verdicts = sorted(out.glob("judge-*.json"))
    assert len(verdicts) == 2 * (len(A.PAIR_SPECS) - 1)  # every spec but direct, per persona
    kept = {p.name: p.read_text() for p in verdicts}
    assert main(args) == 0  # judged again only where the key changed: nowhere
    assert {p.name: p.read_text() for p in out.glob("judge-*.json")} == kept


@pytest.mark.parametrize("flags, message", [
    (["--pairs", "elementary+concise+friendly"], "two personas per pair"),
    (["--pairs", "elementary+clever"], "Unknown persona 'clever'"),
    (["--modes", "beam"], "--modes takes sample and/or greedy"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_bad_flags_are_one_line_before_any_model_loads(flags, message, tmp_path, capsys):
    assert main(["ablation", "--model", str(tmp_path / "no-such-model"), "--out-dir", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_pairs_take_two_presets():
    assert A.ROWS[:2] == (A.NONE, A.PLACEBO)
    from pjudge_core.cli.ablation import read_pairs

    assert read_pairs("poem+one sentence,PhD+detailed") == [("poem", "one sentence"), ("PhD", "detailed")]
    with pytest.raises(InputError, match="two personas per pair"):
        read_pairs("poem+one sentence+French")
