"""Reward-model scoring of batch outputs: per-spec means, paired differences, errors."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import save_reward_model

from pjudge_core.cli import main
from pjudge_core.evaluation.judges.reward_model import (
    _reward_vector,
    load_reward_model,
    reward_scores,
    score_rm,
)
from pjudge_core.evaluation.runs.records import load_records


def test_rm_cli_llama(tmp_path, records_file, capsys):
    folder = save_reward_model(tmp_path / "rm")
    out = tmp_path / "rm.json"
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--json", "--out", str(out),
                 "--quiet", "--batch-size", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["by_spec"]) == {"persona-judge", "direct"} and printed["by_spec"]["direct"]["n"] == 4
    assert printed["paired"]["n"] == 4 and printed["paired"]["a"] == "persona-judge"
    saved = json.loads(out.read_text())
    assert len(saved["scores"]) == 8
    scores = {(s["id"], s["spec"]): s["score"] for s in saved["scores"]}
    diffs = [scores[(str(i), "persona-judge")] - scores[(str(i), "direct")] for i in range(4)]
    assert saved["paired"]["mean"] == pytest.approx(sum(diffs) / 4)


def test_rm_batching_matches_single(tmp_path, records_file):
    model, tok = load_reward_model(str(save_reward_model(tmp_path / "rm")))
    recs = load_records(records_file)
    items = [(r["prompt"], r["text"]) for r in recs]
    one = reward_scores(model, tok, items, batch_size=1)
    many = reward_scores(model, tok, items, batch_size=8)
    assert one == pytest.approx(many, abs=1e-4)


def test_rm_vector_needs_dimension_gpt2_without_template(tmp_path, records_file, capsys):
    folder = save_reward_model(tmp_path / "gpt2", kind="gpt2", num_labels=3, template=False)
    capsys.readouterr()
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--quiet"]) == 2
    assert "--dimension" in capsys.readouterr().err
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--dimension", "2", "--quiet"]) == 0
    model, tok = load_reward_model(str(folder))
    result = score_rm(load_records(records_file), model, tok, dimension=1)
    assert result["by_spec"]["persona-judge"]["n"] == 4


def test_rm_armo_style_output():
    out = SimpleNamespace(rewards=torch.tensor([[1.0, 2.0], [3.0, 4.0]]), score=torch.tensor([[7.0], [8.0]]),
                          logits=torch.zeros(2, 1))
    assert _reward_vector(out, 1).tolist() == [2.0, 4.0]
    assert _reward_vector(out, None).tolist() == [7.0, 8.0]


def test_rm_load_errors_are_one_line(tmp_path, records_file, capsys):
    (tmp_path / "empty").mkdir()
    for target in (str(tmp_path / "empty"), str(tmp_path / "missing-folder")):
        capsys.readouterr()
        assert main(["eval", "rm", "--in", str(records_file), "--rm", target, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1
    assert main(["eval", "rm", "--in", str(tmp_path / "nope.jsonl"), "--rm", "x"]) == 2
