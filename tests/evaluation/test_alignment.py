"""AlignX alignment accuracy and the app's judge capacity, on a tiny model."""

import json

import pytest
import torch
from conftest import ROOT, make_tiny_lm

from pjudge_core import InputError, prompt_ids
from pjudge_core.cli import main
from pjudge_core.evaluation.scoring.logprobs import sequence_logprobs, token_logprobs
from pjudge_core.evaluation.self_judge.alignment import (
    alignment_accuracy,
    judge_capacity,
    load_pairs,
)

PERSONAS = ["Explain like I am in elementary school.", "Explain like I have a PhD."]


@pytest.fixture
def pairs():
    out = []
    for i in range(10):
        out.append({"prompt": f"Describe a sunset number {i}.", "chosen": "A warm sunset over the sea." * (1 + i % 3),
                    "rejected": "Be concise, be bold." + " sea" * (i % 4), "ground_truth_persona": PERSONAS[i % 2],
                    "index": i})
    return out


def test_batched_logprobs_match_unbatched(tiny_lm):
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


def test_the_shared_scorer_equals_the_flat_one_on_sums_and_tokens(tiny_lm):
    tok = tiny_lm.tokenizer
    prompts = [prompt_ids(tok, q, prefs) for q in ("Describe a sunset.", "Explain the sea to me please, in detail.")
               for prefs in ([], [PERSONAS[0]], [PERSONAS[1]])]
    responses = [tok(r, add_special_tokens=False)["input_ids"]
                 for r in ("A warm sunset.", "A warm sunset over the sea.", "Be concise, be bold about the sea.", "A")]
    items = [(p, r) for p in prompts for r in responses]  # every prompt under several responses of other lengths
    items += items[:5]  # and duplicates
    flat_sums = sequence_logprobs(tiny_lm, items, share=False)
    flat_tokens = token_logprobs(tiny_lm, items, share=False)
    assert [len(t) for t in flat_tokens] == [len(r) for _, r in items]
    for batch_size in (1, 3, None):
        assert sequence_logprobs(tiny_lm, items, share=True, batch_size=batch_size) == pytest.approx(flat_sums, abs=1e-4)
        shared = token_logprobs(tiny_lm, items, share=True, batch_size=batch_size)
        assert [len(t) for t in shared] == [len(t) for t in flat_tokens]
        assert all(s == pytest.approx(f, abs=1e-4) for s, f in zip(shared, flat_tokens))
    shared = token_logprobs(tiny_lm, items, share=True)
    assert token_logprobs(tiny_lm, items[::-1], share=True)[::-1] == shared  # order-invariant: bit-identical
    assert sequence_logprobs(tiny_lm, items, share=True) == pytest.approx([sum(t) for t in shared], abs=1e-4)


def test_alignment_accuracy_with_and_without_sharing_agrees(tiny_lm, pairs):
    shared = alignment_accuracy(tiny_lm, pairs)
    flat = alignment_accuracy(tiny_lm, pairs, share=False, batch_size=3)
    for a, b in zip(shared["per_pair"], flat["per_pair"]):
        assert (a["r_chosen"], a["r_rejected"]) == pytest.approx((b["r_chosen"], b["r_rejected"]), abs=1e-4)
        assert a["outcome"] == b["outcome"] and a["index"] == b["index"]
    assert shared["accuracy"] == flat["accuracy"]


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


def test_align_acc_cli_and_capacity(tiny_lm, tiny_folder, tmp_path, pairs, capsys):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs))
    folder = tiny_folder
    capsys.readouterr()
    assert main(["eval", "align-acc", "--pairs", str(path), "--model", str(folder), "--limit", "6", "--json",
                 "--quiet", "--batch-size", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and {"accuracy", "low", "high", "by_persona"} <= set(out)

    cap = judge_capacity(tiny_lm, n=4, seed=1, pairs_file=path)
    assert cap["n"] == 4 and {"accuracy", "low", "high", "by_persona"} <= set(cap)
    assert judge_capacity(tiny_lm, n=4, seed=1, pairs_file=path)["accuracy"] == cap["accuracy"]
    long_lm = make_tiny_lm(max_positions=4096)  # real pairs are long in the tiny byte-level vocabulary
    shipped = judge_capacity(long_lm, n=3, seed=0)  # the default file: the sample in data/
    assert shipped["n"] == 3
    with pytest.raises(InputError, match="does not exist"):
        judge_capacity(tiny_lm, pairs_file=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "x", "chosen": "y"}]))
    assert main(["eval", "align-acc", "--pairs", str(bad), "--model", str(folder)]) == 2


def test_the_shipped_sample_holds_60_users_with_their_pairs_and_profiles():
    sample = ROOT / "data" / "psoups_student_phd_sample.json"
    pairs = load_pairs(sample)
    assert len(pairs) == 60 and len({p["ground_truth_persona"] for p in pairs}) == 2
    users = json.loads(sample.read_text())
    assert all(u["profile"].strip() and len(u["Pair-wise Comparative Feedback"]) >= 1 for u in users)


def test_capacity_uses_the_file_named_by_the_environment(monkeypatch, tiny_lm, tmp_path):
    monkeypatch.setenv("PJUDGE_PAIRS", str(tmp_path / "nothing.json"))
    with pytest.raises(InputError, match="nothing.json.* does not exist"):
        judge_capacity(tiny_lm)
