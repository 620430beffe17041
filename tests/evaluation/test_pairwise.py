"""A local LM as pairwise judge of two run specs, in both orders."""

import json

import pytest

from pjudge_core import InputError
from pjudge_core.cli import main
from pjudge_core.evaluation.judges.pairwise import judge_win_rate
from pjudge_core.evaluation.runs.records import load_records


def test_judge_win_rate_both_orders(tiny_lm, records_file):
    records = load_records(records_file)
    result = judge_win_rate(records, tiny_lm, "vivid and concise")
    assert result["n"] == 4 and result["a"] == "persona-judge" and result["b"] == "direct"
    assert sum(result[k]["count"] for k in ("win", "tie", "loss")) == 4
    for p in result["per_prompt"]:
        assert p["p_win"] + p["p_tie"] + p["p_loss"] == pytest.approx(1.0)
        assert sum(p["order_ab"]) == pytest.approx(1.0)
    swapped = judge_win_rate(records, tiny_lm, "vivid and concise", spec_a="direct", spec_b="persona-judge")
    for p, q in zip(result["per_prompt"], swapped["per_prompt"]):
        assert p["p_win"] == pytest.approx(q["p_loss"]) and p["p_tie"] == pytest.approx(q["p_tie"])
    assert swapped["win"]["count"] == result["loss"]["count"]
    loose = judge_win_rate(records, tiny_lm, "vivid and concise", consistency=False)
    for p, q in zip(result["per_prompt"], loose["per_prompt"]):
        assert p["outcome"] == q["outcome"] or (p["outcome"] == "tie" and not p["consistent"])
    with pytest.raises(InputError):
        judge_win_rate(records, tiny_lm, "  ")


def test_judge_cli_with_saved_model(tiny_folder, tmp_path, records_file, capsys):
    folder = tiny_folder
    out = tmp_path / "judge.json"
    assert main(["eval", "judge", "--in", str(records_file), "--judge", str(folder), "--aspect", "concise",
                 "--out", str(out), "--quiet"]) == 0
    assert "win" in capsys.readouterr().out
    assert json.loads(out.read_text())["kind"] == "judge"
