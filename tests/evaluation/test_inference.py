"""Persona inference from example pairs: scores, pairs files, `infer` and `eval infer-acc`."""

import json

import pytest
import torch
from conftest import ROOT, make_tiny_lm

from pjudge_core import InputError, infer_persona, prompt_ids
from pjudge_core.cli import main
from pjudge_core.evaluation.scoring import prefix_tree
from pjudge_core.evaluation.scoring.logprobs import sequence_logprobs
from pjudge_core.evaluation.scoring.prefix_tree import prefix_tree_logprobs
from pjudge_core.evaluation.self_judge.inference import (
    FEEDBACK,
    WRITTEN,
    candidate_texts,
    inference_accuracy,
    load_candidates,
    load_users,
    sample_users,
    write_preference,
)
from pjudge_core.presets import presets

CANDIDATES = ["Be concise.", "Explain like I have a PhD.", "Be imaginative and creative, with vivid detail."]
PAIRS = [
    {"prompt": "Describe a sunset.", "chosen": "A warm sunset over the sea.", "rejected": "A cold, bold sea."},
    # a shared start ("The sea is") whose terms cancel, and a rejected answer that extends the chosen one
    {"prompt": "Explain the sea.", "chosen": "The sea is deep.", "rejected": "The sea is deep and blue, be bold."},
    {"prompt": "Explain the sea.", "chosen": "The sea is deep.", "rejected": "The sea is deep and blue, be bold."},
    {"prompt": "Be helpful.", "chosen": "Same answer.", "rejected": "Same answer."},  # identical: scores 0
]


def brute_force(lm, pairs, candidates):
    """Σ [log p(chosen | x, c) − log p(rejected | x, c)] with whole, unshared, unbatched sequences."""
    tok = lm.tokenizer
    scores = {}
    for c in candidates:
        total = 0.0
        for pair in pairs:
            prompt = prompt_ids(tok, pair["prompt"], [c])
            chosen, rejected = (tok(pair[k], add_special_tokens=False)["input_ids"] for k in ("chosen", "rejected"))
            lp = sequence_logprobs(lm, [(prompt, chosen), (prompt, rejected)], batch_size=1)
            total += lp[0] - lp[1]
        scores[c] = total
    return scores


def test_ranking_equals_brute_force_scoring(tiny_lm):
    expected = brute_force(tiny_lm, PAIRS, CANDIDATES)
    for batch_size in (1, 2, 8):
        inference = infer_persona(tiny_lm, PAIRS, CANDIDATES, batch_size=batch_size)
        assert [t for t, _ in inference.ranking] == sorted(CANDIDATES, key=lambda c: -expected[c])
        assert dict(inference.ranking) == pytest.approx(expected, abs=1e-3)
        assert inference.best == inference.ranking[0][0] and inference.pairs == 4 and inference.skipped == []
        assert all(inference.per_pair[c][3] == 0.0 for c in CANDIDATES)
    assert json.loads(json.dumps(inference.to_dict()))["best"] == inference.best


def sequences(lm, pairs, candidates):
    tok = lm.tokenizer
    return {tuple(prompt_ids(tok, p["prompt"], [c]) + tok(p[k], add_special_tokens=False)["input_ids"])
            for p in pairs for c in candidates for k in ("chosen", "rejected")}


def test_shared_prefixes_are_fed_once(tiny_lm):
    fed = []

    def count(module, args, kwargs):
        rows, width = kwargs["input_ids"].shape
        fed.append((int(kwargs["attention_mask"][:, -width:].sum()), rows * width))  # new tokens, with padding

    hook = tiny_lm.model.get_decoder().register_forward_pre_hook(count, with_kwargs=True)
    try:
        infer_persona(tiny_lm, PAIRS, CANDIDATES)
    finally:
        hook.remove()
    seqs = sequences(tiny_lm, PAIRS, CANDIDATES)
    prefixes = {s[:i] for s in seqs for i in range(1, len(s) + 1)}
    real, padded = (sum(f[i] for f in fed) for i in (0, 1))
    # Shared runs are fed once (tiny ones may be repeated to save a forward): far less than unshared.
    assert real <= 1.1 * len(prefixes) and len(prefixes) < sum(len(s) for s in seqs) / 2
    assert padded <= 1.5 * real  # batches are cut where padding would cost more than a forward


def test_the_prefix_tree_scorer_equals_the_flat_scorer(tiny_lm, monkeypatch):
    tok = tiny_lm.tokenizer
    items = [(prompt_ids(tok, q, prefs), tok(r, add_special_tokens=False)["input_ids"])
             for q in ("Describe a sunset.", "Explain the sea.", "Explain the sea, in detail.")
             for prefs in ([], ["Be concise."], ["Be concise and bold."])
             for r in ("A warm sunset.", "A warm sunset over the sea.", "A", "")]
    items.append((items[1][0] + items[1][1], items[2][1]))  # a prompt that is another item's whole sequence
    flat = [sequence_logprobs(tiny_lm, [item], batch_size=1)[0] if item[1] else 0.0 for item in items]
    for batch_size in (1, 4, 64):
        assert prefix_tree_logprobs(tiny_lm, items, batch_size=batch_size) == pytest.approx(flat, abs=1e-4)
    reordered = items[::-1]
    assert prefix_tree_logprobs(tiny_lm, reordered)[::-1] == prefix_tree_logprobs(tiny_lm, items)  # bit-identical
    monkeypatch.setattr(prefix_tree, "plain_head", lambda model: False)  # heads that need the model's own forward
    assert prefix_tree_logprobs(tiny_lm, items, batch_size=5) == pytest.approx(flat, abs=1e-4)
    with pytest.raises(InputError, match="longer than the model's context of 128"):
        prefix_tree_logprobs(make_tiny_lm(max_positions=128), [(items[0][0], [5] * 200)])


def test_swapping_chosen_and_rejected_negates_the_scores(tiny_lm):
    inference = infer_persona(tiny_lm, PAIRS, CANDIDATES)
    swapped = infer_persona(tiny_lm, [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in PAIRS],
                            CANDIDATES)
    assert dict(swapped.ranking) == {t: -s for t, s in inference.ranking}  # the same sequences: exactly
    assert [t for t, _ in swapped.ranking] == [t for t, _ in reversed(inference.ranking)]


def single_token_pair(lm, prompt, truth, others):
    """One-token answers (a, b) maximising min over other candidates d of the margin
    [log p(a|x,T) − log p(b|x,T)] − [log p(a|x,d) − log p(b|x,d)]: T must score higher than every d."""
    tok = lm.tokenizer
    with torch.no_grad():
        last = {c: torch.log_softmax(lm.model(torch.tensor([prompt_ids(tok, prompt, [c])])).logits[0, -1].float(), -1)
                for c in [truth] + others}
    usable = [t for t in range(len(tok)) if t not in tok.all_special_ids and tok.decode([t]).strip()
              and tok(tok.decode([t]), add_special_tokens=False)["input_ids"] == [t]]
    usable = torch.tensor(usable)
    margins = torch.stack([(last[truth] - last[d])[usable] for d in others])  # (others, tokens)
    pairwise = (margins[:, :, None] - margins[:, None, :]).min(0).values  # min over d of margin(a) − margin(b)
    best = int(pairwise.argmax())
    a, b = usable[best // len(usable)], usable[best % len(usable)]
    assert pairwise.max() > 0
    return {"prompt": prompt, "chosen": tok.decode([int(a)]), "rejected": tok.decode([int(b)])}


def test_the_true_candidate_wins_where_it_must(tiny_lm):
    for truth in CANDIDATES:
        others = [c for c in CANDIDATES if c != truth]
        pairs = [single_token_pair(tiny_lm, q, truth, others) for q in ("Describe a sunset.", "Explain the sea.")]
        assert infer_persona(tiny_lm, pairs, CANDIDATES).best == truth
        swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in pairs]
        assert infer_persona(tiny_lm, swapped, CANDIDATES).ranking[-1][0] == truth


def test_candidates_default_to_the_persona_presets_with_their_names(tiny_lm):
    inference = infer_persona(tiny_lm, PAIRS[:1])
    personas = presets().personas
    assert {t for t, _ in inference.ranking} == {p.text for p in personas.values()}
    assert inference.name(personas["PhD"].text) == "PhD"
    assert candidate_texts({"mine": "Be brief."}) == {"Be brief.": "mine"}
    assert candidate_texts(["Be brief.", "Be brief."]) == {"Be brief.": ""}  # duplicates dropped
    shipped = load_candidates(ROOT / "data" / "psoups_candidates.json")  # the six P-Soups texts, as in the presets
    assert shipped == [p.text for p in personas.values() if p.group.startswith("P-Soups")] and len(shipped) == 6


@pytest.mark.parametrize("pairs, candidates, message", [
    (PAIRS, [], "no candidate preference texts"),
    (PAIRS, ["Be brief.", " "], "Candidate 1 is empty"),
    (PAIRS, "Be brief.", "not one string"),
    ([], CANDIDATES, "non-empty list of preference pairs"),
    ([{"prompt": "x", "chosen": "y"}], CANDIDATES, "pair 0 lacks a non-empty 'rejected'"),
    ([PAIRS[0], {**PAIRS[0], "prompt": " "}], CANDIDATES, "pair 1 lacks a non-empty 'prompt'"),
    ([PAIRS[0], "text"], CANDIDATES, "pair 1 is not an object"),
])
def test_bad_input_is_one_clear_sentence(tiny_lm, pairs, candidates, message):
    with pytest.raises(InputError, match=message):
        infer_persona(tiny_lm, pairs, candidates)


def test_pairs_longer_than_the_context_are_skipped_and_counted():
    short = make_tiny_lm(max_positions=128)
    long_pair = {"prompt": "Explain the sea.", "chosen": "sea " * 100, "rejected": "A sea."}
    inference = infer_persona(short, [PAIRS[0], long_pair], CANDIDATES)
    assert inference.pairs == 1 and inference.skipped == [1]
    assert inference.per_pair[CANDIDATES[0]][1] is None
    assert dict(inference.ranking) == pytest.approx(dict(infer_persona(short, [PAIRS[0]], CANDIDATES).ranking))
    with pytest.raises(InputError, match="Every pair is longer than the model's context of 128"):
        infer_persona(short, [long_pair], CANDIDATES)
    users = [{"index": 0, "pairs": [long_pair], "truth": CANDIDATES[0]},
             {"index": 1, "pairs": [PAIRS[0], long_pair], "truth": CANDIDATES[1]}]
    result = inference_accuracy(short, users, CANDIDATES)
    assert result["n"] == 1 and result["skipped_users"] == [0] and result["skipped_pairs"] == 1
    with pytest.raises(InputError, match="Every user's pairs are longer than the model's context"):
        inference_accuracy(short, users[:1], CANDIDATES)


def users_file(tmp_path, truths=(0, 1, 2, 0)):
    users = [{"profile": "p", "ground_truth_persona": CANDIDATES[t], FEEDBACK: PAIRS[i % 2:i % 2 + 2]}
             for i, t in enumerate(truths)]
    path = tmp_path / "users.json"
    path.write_text(json.dumps(users))
    return path


def test_pairs_files_of_one_user_or_of_user_records(tmp_path):
    users = load_users(users_file(tmp_path))
    assert [u["index"] for u in users] == [0, 1, 2, 3] and users[1]["truth"] == CANDIDATES[1]
    assert users[0]["pairs"] == PAIRS[:2]
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{**p, "ground_truth_persona": CANDIDATES[0]} for p in PAIRS]))
    assert load_users(one) == [{"index": 0, "pairs": PAIRS, "truth": CANDIDATES[0]}]
    one.write_text(json.dumps(PAIRS))
    assert load_users(one)[0]["truth"] is None
    shipped = load_users(ROOT / "data" / "psoups_student_phd_sample.json")
    assert len(shipped) == 60 and all(len(u["pairs"]) == 4 and u["truth"] for u in shipped)
    assert len(sample_users(shipped, 5, seed=1)) == 5 and sample_users(shipped, 5, seed=1) == sample_users(shipped, 5, seed=1)
    assert sample_users(shipped, 3) == shipped[:3]


@pytest.mark.parametrize("content, message", [
    ("{\"prompt\": 1}", "expected a non-empty JSON list"),
    ("[]", "expected a non-empty JSON list"),
    ("[1, 2", "line 1: invalid JSON"),
    (json.dumps([PAIRS[0], 3]), "item 1 is not an object"),
    (json.dumps([{FEEDBACK: PAIRS}, PAIRS[0]]), "item 1 lacks 'Pair-wise Comparative Feedback', but item 0 is a user"),
    (json.dumps([PAIRS[0], {FEEDBACK: PAIRS}]), "item 1 has 'Pair-wise Comparative Feedback', but item 0 is a pref"),
    (json.dumps([{FEEDBACK: PAIRS}, {FEEDBACK: [PAIRS[0], {"prompt": "x", "chosen": "", "rejected": "z"}]}]),
     "item 1: pair 1 lacks a non-empty 'chosen'"),
    (json.dumps([{FEEDBACK: []}]), "item 0: expected a non-empty list of preference pairs"),
    (json.dumps([{FEEDBACK: PAIRS, "ground_truth_persona": ""}]), "item 0: 'ground_truth_persona' must be"),
])
def test_a_pairs_file_of_the_wrong_shape_names_the_file_and_item(tmp_path, content, message):
    path = tmp_path / "pairs.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        load_users(path)
    assert str(path) in str(error.value)


def test_inference_accuracy_counts_top1_against_the_truth(tiny_lm, tmp_path):
    users = load_users(users_file(tmp_path))
    result = inference_accuracy(tiny_lm, users, CANDIDATES)
    bests = [infer_persona(tiny_lm, u["pairs"], CANDIDATES).best for u in users]
    correct = sum(b == u["truth"] for b, u in zip(bests, users))
    assert (result["n"], result["correct"]) == (4, correct) and result["chance"] == pytest.approx(1 / 3)
    assert result["low"] <= result["accuracy"] <= result["high"]
    assert sum(d["n"] for d in result["by_persona"].values()) == 4 and result["seconds_per_user"] > 0
    assert sum(sum(c.values()) for c in result["confusion"].values()) == 4
    with pytest.raises(InputError, match="User 2's ground_truth_persona .* is not among the candidates"):
        inference_accuracy(tiny_lm, users, CANDIDATES[:2])
    with pytest.raises(InputError, match="User 0 has no 'ground_truth_persona'"):
        inference_accuracy(tiny_lm, [{"index": 0, "pairs": PAIRS, "truth": None}], CANDIDATES)


def test_infer_cli(tiny_folder, tmp_path, capsys):
    users = users_file(tmp_path)
    cands = tmp_path / "cands.json"
    cands.write_text(json.dumps(CANDIDATES))
    capsys.readouterr()
    assert main(["infer", "--pairs", str(users), "--index", "1", "--candidates", str(cands), "--model", tiny_folder,
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["index"] == 1 and out["truth"] == CANDIDATES[1] and len(out["ranking"]) == 3 and out["pairs"] == 2
    assert main(["infer", "--pairs", str(users), "--candidates", str(cands), "--model", tiny_folder]) == 0
    text = capsys.readouterr().out
    assert "2 pairs of user 0" in text and "<- ground truth" in text and " 3. " in text
    for args, message in [(["--index", "4"], "--index 4 is out of range: "),
                          (["--candidates", str(tmp_path / "none.json")], "none.json' does not exist"),
                          (["--pairs", str(cands)], "item 0 is not an object")]:
        assert main(["infer", "--pairs", str(users), "--model", tiny_folder, *args]) == 2
        assert message in capsys.readouterr().err
    cands.write_text("[]")
    assert main(["infer", "--pairs", str(users), "--candidates", str(cands), "--model", tiny_folder]) == 2
    assert "holds no candidates" in capsys.readouterr().err


def test_infer_acc_cli(tiny_folder, tmp_path, capsys):
    users = users_file(tmp_path)
    cands = tmp_path / "cands.json"
    cands.write_text(json.dumps(CANDIDATES))
    out = tmp_path / "acc.json"
    capsys.readouterr()
    assert main(["eval", "infer-acc", "--pairs", str(users), "--candidates", str(cands), "--model", tiny_folder,
                 "--limit", "3", "--sample-seed", "2", "--json", "--quiet", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 3 and {"accuracy", "low", "high", "by_persona", "seconds_per_user"} <= set(printed)
    assert "per_user" not in printed and len(json.loads(out.read_text())["per_user"]) == 3
    assert main(["eval", "infer-acc", "--pairs", str(users), "--candidates", str(cands), "--model", tiny_folder,
                 "--quiet"]) == 0
    assert "top-1 persona inference of" in capsys.readouterr().out
    out.unlink()
    cands.write_text(json.dumps(CANDIDATES[:2]))
    assert main(["eval", "infer-acc", "--pairs", str(users), "--candidates", str(cands), "--model", tiny_folder,
                 "--quiet", "--out", str(out)]) == 2
    assert "is not among the candidates" in capsys.readouterr().err and not out.exists()
    assert main(["eval", "infer-acc", "--pairs", str(users), "--limit", "0", "--model", tiny_folder]) == 2


def test_write_adds_the_models_own_sentence_as_a_candidate():
    lm = make_tiny_lm(max_positions=4096)  # room for the instruction with its examples
    plain = infer_persona(lm, PAIRS, CANDIDATES)
    inference = infer_persona(lm, PAIRS, CANDIDATES, write=True)
    assert inference.written and inference.written == write_preference(lm, PAIRS)  # greedy: the same sentence
    assert inference.name(inference.written) == WRITTEN and len(inference.ranking) == 4
    scores = dict(inference.ranking)
    assert {c: scores[c] for c in CANDIDATES} == pytest.approx(dict(plain.ranking), abs=1e-3)
    assert scores[inference.written] == pytest.approx(brute_force(lm, PAIRS, [inference.written])[inference.written],
                                                      abs=1e-3)
    assert inference.to_dict()["written"] == inference.written and plain.to_dict()["written"] is None


def test_write_with_no_room_in_the_context_writes_nothing(tiny_lm):
    long_pairs = [{"prompt": "word " * 150, "chosen": "yes " * 60, "rejected": "no " * 60}] * 2
    assert write_preference(tiny_lm, long_pairs) is None  # 512 positions cannot hold one example and an answer
    inference = infer_persona(tiny_lm, PAIRS, CANDIDATES, write=True)
    assert inference.written is None or inference.written in dict(inference.ranking)


def test_infer_cli_write(tmp_path, capsys):
    folder = tmp_path / "tiny-long"
    lm = make_tiny_lm(max_positions=4096)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    users = users_file(tmp_path)
    cands = tmp_path / "cands.json"
    cands.write_text(json.dumps(CANDIDATES))
    capsys.readouterr()
    assert main(["infer", "--pairs", str(users), "--candidates", str(cands), "--model", str(folder), "--write",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["written"] and len(out["ranking"]) == 4
    assert {"text": out["written"], "name": WRITTEN} == {k: v for k, v in out["ranking"][
        [r["text"] for r in out["ranking"]].index(out["written"])].items() if k != "score"}
