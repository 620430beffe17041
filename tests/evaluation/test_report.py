"""The comparison report: Markdown table and plotly HTML per run spec, with score files."""

import json

from conftest import save_reward_model

from pjudge_core.cli import main
from pjudge_core.evaluation.reports.report import summarize
from pjudge_core.evaluation.runs.records import load_records


def test_report(tmp_path, records_file, capsys):
    folder = save_reward_model(tmp_path / "rm")
    scores = tmp_path / "rm.json"
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--out", str(scores), "--quiet"]) == 0
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["eval", "report", "--in", str(records_file), "--scores", str(scores), "--out-md", str(md),
                 "--out-html", str(html)]) == 0
    text = md.read_text()
    assert "| persona-judge | 4 |" in text and "| direct | 4 |" in text and "Reward" in text and "Paired difference" in text
    assert "0.650" in text  # mean acceptance rate of persona-judge
    assert "plotly" in html.read_text().lower()
    capsys.readouterr()
    assert main(["eval", "report", "--in", str(records_file), "--scores", str(records_file), "--out-md", str(md)]) == 2


def test_old_records_without_a_spec_are_grouped_by_method(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "prompt": "p", "method": m, "text": "t", "stats": {}}) + "\n"
                            for i in range(2) for m in ("persona-judge", "direct")))
    assert {k: v["n"] for k, v in summarize(load_records(path)).items()} == {"persona-judge": 2, "direct": 2}
