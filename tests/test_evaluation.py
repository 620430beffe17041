"""Evaluation (issue 4): reward models, pairwise judge, alignment accuracy, reports."""

from __future__ import annotations

import json

import pytest
import torch

from pjudge_core import InputError
from pjudge_core.cli import main
from pjudge_core.evaluation import (
    alignment_accuracy,
    judge_win_rate,
    load_records,
    load_reward_model,
    mean_interval,
    paired_difference,
    reward_scores,
    score_rm,
    sequence_logprobs,
    wilson,
)

RESPONSES = {
    "persona-judge": ["A warm, vivid sunset.", "The sea is deep and blue.", "Helpful and kind.", "Be bold!"],
    "direct": ["Sunset.", "Sea: water.", "I can help you with that question today.", "Short."],
}
PERSONAS = ["Explain like I am in elementary school.", "Explain like I have a PhD."]


@pytest.fixture
def records_file(tmp_path):
    path = tmp_path / "batch.jsonl"
    with open(path, "w") as fh:
        for i in range(4):
            for method, texts in RESPONSES.items():
                stats = {"new_tokens": 5 + i, "seconds": 0.5, "stopped_by": "eos"}
                if method == "persona-judge":
                    stats["acceptance_rate"] = 0.5 + i / 10
                fh.write(json.dumps({"id": str(i), "prompt": f"Describe thing {i}.", "method": method,
                                     "text": texts[i], "settings": {}, "stats": stats}) + "\n")
    return path


@pytest.fixture
def pairs():
    out = []
    for i in range(10):
        out.append({"prompt": f"Describe a sunset number {i}.", "chosen": "A warm sunset over the sea." * (1 + i % 3),
                    "rejected": "Be concise, be bold." + " sea" * (i % 4), "ground_truth_persona": PERSONAS[i % 2],
                    "index": i})
    return out


def _save_rm(folder, kind="llama", num_labels=1, template=True):
    from conftest import CHAT_TEMPLATE, make_tokenizer
    from transformers import GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

    tok = make_tokenizer(CHAT_TEMPLATE if template else None)
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, num_labels=num_labels,
                             pad_token_id=tok.pad_token_id, max_position_embeddings=512)
        model = LlamaForSequenceClassification(config)
    else:
        config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=512,
                            num_labels=num_labels, pad_token_id=tok.pad_token_id)
        model = GPT2ForSequenceClassification(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- statistics

def test_statistics():
    m = mean_interval([1.0, 2.0, 3.0])
    assert m["mean"] == 2.0 and m["low"] < 2.0 < m["high"]
    assert mean_interval([5.0])["low"] is None
    d = paired_difference({"a": 2.0, "b": 3.0, "c": 5.0, "x": 9.0}, {"a": 1.0, "b": 1.5, "c": 3.5})
    assert d["n"] == 3 and d["mean"] == pytest.approx(4 / 3) and d["p_value"] is not None
    low, high = wilson(8, 10)
    assert 0.4 < low < 0.8 < high < 1.0
    assert wilson(0, 0) == (None, None)


# --------------------------------------------------------------------------- reward model

def test_rm_cli_llama(tmp_path, records_file, capsys):
    folder = _save_rm(tmp_path / "rm")
    out = tmp_path / "rm.json"
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--json", "--out", str(out),
                 "--quiet", "--batch-size", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["by_method"]) == {"persona-judge", "direct"} and printed["by_method"]["direct"]["n"] == 4
    assert printed["paired"]["n"] == 4 and printed["paired"]["a"] == "persona-judge"
    saved = json.loads(out.read_text())
    assert len(saved["scores"]) == 8
    scores = {(s["id"], s["method"]): s["score"] for s in saved["scores"]}
    diffs = [scores[(str(i), "persona-judge")] - scores[(str(i), "direct")] for i in range(4)]
    assert saved["paired"]["mean"] == pytest.approx(sum(diffs) / 4)


def test_rm_batching_matches_single(tmp_path, records_file):
    model, tok = load_reward_model(str(_save_rm(tmp_path / "rm")))
    recs = load_records(records_file)
    items = [(r["prompt"], r["text"]) for r in recs]
    one = reward_scores(model, tok, items, batch_size=1)
    many = reward_scores(model, tok, items, batch_size=8)
    assert one == pytest.approx(many, abs=1e-4)


def test_rm_vector_needs_dimension_gpt2_without_template(tmp_path, records_file, capsys):
    folder = _save_rm(tmp_path / "gpt2", kind="gpt2", num_labels=3, template=False)
    capsys.readouterr()
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--quiet"]) == 2
    assert "--dimension" in capsys.readouterr().err
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--dimension", "2", "--quiet"]) == 0
    model, tok = load_reward_model(str(folder))
    result = score_rm(load_records(records_file), model, tok, dimension=1)
    assert result["by_method"]["persona-judge"]["n"] == 4


def test_rm_armo_style_output():
    from types import SimpleNamespace

    from pjudge_core.evaluation import _reward_vector

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


# --------------------------------------------------------------------------- pairwise judge

def test_judge_win_rate_both_orders(tiny_lm, records_file):
    records = load_records(records_file)
    result = judge_win_rate(records, tiny_lm, "vivid and concise")
    assert result["n"] == 4 and result["a"] == "persona-judge" and result["b"] == "direct"
    assert sum(result[k]["count"] for k in ("win", "tie", "loss")) == 4
    for p in result["per_prompt"]:
        assert p["p_win"] + p["p_tie"] + p["p_loss"] == pytest.approx(1.0)
        assert sum(p["order_ab"]) == pytest.approx(1.0)
    swapped = judge_win_rate(records, tiny_lm, "vivid and concise", method_a="direct", method_b="persona-judge")
    for p, q in zip(result["per_prompt"], swapped["per_prompt"]):
        assert p["p_win"] == pytest.approx(q["p_loss"]) and p["p_tie"] == pytest.approx(q["p_tie"])
    assert swapped["win"]["count"] == result["loss"]["count"]
    loose = judge_win_rate(records, tiny_lm, "vivid and concise", consistency=False)
    for p, q in zip(result["per_prompt"], loose["per_prompt"]):
        assert p["outcome"] == q["outcome"] or (p["outcome"] == "tie" and not p["consistent"])
    with pytest.raises(InputError):
        judge_win_rate(records, tiny_lm, "  ")


def test_judge_cli_with_saved_model(tiny_lm, tmp_path, records_file, capsys):
    folder = tmp_path / "judge"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    out = tmp_path / "judge.json"
    assert main(["eval", "judge", "--in", str(records_file), "--judge", str(folder), "--aspect", "concise",
                 "--out", str(out), "--quiet"]) == 0
    assert "win" in capsys.readouterr().out
    assert json.loads(out.read_text())["kind"] == "judge"


# --------------------------------------------------------------------------- alignment accuracy

def test_batched_logprobs_match_unbatched(tiny_lm):
    from pjudge_core import prompt_ids

    tok = tiny_lm.tokenizer
    items = [(prompt_ids(tok, q, prefs), tok(r, add_special_tokens=False)["input_ids"])
             for q in ("Describe a sunset.", "Explain the sea to me please, in detail.")
             for prefs in ([], [PERSONAS[0]], [PERSONAS[1]])
             for r in ("A warm sunset.", "Be concise, be bold and imaginative about the sea.")]
    batched = sequence_logprobs(tiny_lm, items, batch_size=5)
    single = sequence_logprobs(tiny_lm, items, batch_size=1)
    assert batched == pytest.approx(single, abs=1e-4)
    # and against a direct computation
    p, r = items[3]
    ids = torch.tensor([p + r])
    logp = torch.log_softmax(tiny_lm.model(ids).logits[0].float(), -1)
    direct = sum(logp[len(p) - 1 + i, t].item() for i, t in enumerate(r))
    assert single[3] == pytest.approx(direct, abs=1e-4)


def test_swap_gives_one_minus_accuracy(tiny_lm, pairs):
    result = alignment_accuracy(tiny_lm, pairs, batch_size=3)
    swapped = alignment_accuracy(tiny_lm, [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs],
                                 batch_size=3)
    assert result["n"] == 10 and 0 <= result["accuracy"] <= 1
    assert swapped["wins"] == result["losses"] and swapped["ties"] == result["ties"]
    assert swapped["accuracy"] == pytest.approx(1 - result["accuracy"], abs=1e-12)
    assert set(result["by_persona"]) == set(PERSONAS)
    assert sum(d["n"] for d in result["by_persona"].values()) == 10
    assert result["low"] <= result["accuracy"] <= result["high"]
    # a tie counts one half on both sides
    tie = [{**pairs[0], "rejected": pairs[0]["chosen"]}]
    assert alignment_accuracy(tiny_lm, tie)["accuracy"] == 0.5


def test_align_acc_cli_and_capacity(tiny_lm, tmp_path, pairs, capsys):
    from pjudge_core.capacity import judge_capacity

    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs))
    folder = tmp_path / "m"
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    capsys.readouterr()
    assert main(["eval", "align-acc", "--pairs", str(path), "--model", str(folder), "--limit", "6", "--json",
                 "--quiet", "--batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and {"accuracy", "low", "high", "by_persona"} <= set(out)

    cap = judge_capacity(tiny_lm, n=4, seed=1, pairs_file=path)
    assert cap["n"] == 4 and {"accuracy", "low", "high", "by_persona"} <= set(cap)
    assert judge_capacity(tiny_lm, n=4, seed=1, pairs_file=path)["accuracy"] == cap["accuracy"]
    from conftest import make_tiny_lm

    long_lm = make_tiny_lm(max_positions=4096)  # real pairs are long in the tiny byte-level vocabulary
    shipped = judge_capacity(long_lm, n=3, seed=0)  # the default file (shared data or the sample in data/)
    assert shipped["n"] == 3
    with pytest.raises(InputError, match="does not exist"):
        judge_capacity(tiny_lm, pairs_file=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "x", "chosen": "y"}]))
    assert main(["eval", "align-acc", "--pairs", str(bad), "--model", str(folder)]) == 2


def test_capacity_sample_file_is_valid():
    from pathlib import Path

    from pjudge_core.evaluation import load_pairs

    sample = Path(__file__).resolve().parents[1] / "data" / "psoups_student_phd_sample.json"
    pairs = load_pairs(sample)
    assert len(pairs) == 60 and len({p["ground_truth_persona"] for p in pairs}) == 2


def test_capacity_missing_data(monkeypatch, tiny_lm, tmp_path):
    from pjudge_core import capacity

    monkeypatch.setattr(capacity, "candidate_files", lambda: [tmp_path / "nothing.json"])
    with pytest.raises(InputError, match="not found"):
        capacity.judge_capacity(tiny_lm)


# --------------------------------------------------------------------------- report

def test_report(tmp_path, records_file, capsys):
    folder = _save_rm(tmp_path / "rm")
    scores = tmp_path / "rm.json"
    assert main(["eval", "rm", "--in", str(records_file), "--rm", str(folder), "--out", str(scores), "--quiet"]) == 0
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["eval", "report", "--in", str(records_file), "--scores", str(scores), "--out-md", str(md),
                 "--out-html", str(html)]) == 0
    text = md.read_text()
    assert "| persona-judge | 4 |" in text and "Reward" in text and "Paired difference" in text
    assert "0.650" in text  # mean acceptance rate of persona-judge
    assert "plotly" in html.read_text().lower()
    capsys.readouterr()
    assert main(["eval", "report", "--in", str(records_file), "--scores", str(records_file), "--out-md", str(md)]) == 2
