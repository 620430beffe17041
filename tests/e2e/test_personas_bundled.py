"""Persona inference and persona fit end to end on the bundled SmolLM2-135M-Instruct (offline). Slow."""

import math

import pytest
from conftest import ROOT

from pjudge_core import infer_persona, persona_fit, prompt_ids
from pjudge_core.evaluation.scoring.logprobs import sequence_logprobs
from pjudge_core.evaluation.self_judge.alignment import SAMPLE_PAIRS, alignment_accuracy, load_pairs
from pjudge_core.evaluation.self_judge.inference import load_candidates, load_users

ELEMENTARY = "Generate a response that can be easily understood by an elementary school student."
PHD = "Generate a response that only a PhD Student in that specific field could understand."


@pytest.mark.slow
def test_infer_on_sample_users_and_fit_a_short_answer(bundled_lm):
    tok = bundled_lm.tokenizer
    candidates = load_candidates(ROOT / "data" / "psoups_candidates.json")
    users = load_users(ROOT / "data" / "psoups_student_phd_sample.json")[:2]
    inferences = [infer_persona(bundled_lm, user["pairs"], candidates) for user in users]
    for user, inference in zip(users, inferences):
        assert len(inference.ranking) == 6 and inference.pairs == 4 and not inference.skipped
        assert all(math.isfinite(s) for _, s in inference.ranking)
        assert [t for t, _ in inference.ranking].index(user["truth"]) < 2  # the truth is among the top two
    # the shared-cache, batched scores equal whole unshared sequences on a real chat template
    user = users[0]
    for c in (user["truth"], candidates[4]):
        items = [(prompt_ids(tok, p["prompt"], [c]), tok(p[k], add_special_tokens=False)["input_ids"])
                 for p in user["pairs"] for k in ("chosen", "rejected")]
        lp = sequence_logprobs(bundled_lm, items, batch_size=1)
        assert dict(inferences[0].ranking)[c] == pytest.approx(
            sum(lp[0::2]) - sum(lp[1::2]), abs=2e-3)

    answer = "Plants use sunlight, water and air to make their own food."
    fit = persona_fit(bundled_lm, "How do plants eat?", answer, [ELEMENTARY, PHD])
    assert "".join(fit.texts) == answer and len(fit.per_token["A"]) == len(fit.texts) > 8
    assert all(math.isfinite(v) for values in fit.per_token.values() for v in values)
    assert fit.mean["A"] > fit.mean["B"]  # a plain answer sounds more like the elementary-school persona


@pytest.mark.slow
def test_alignment_accuracy_with_and_without_sharing_agrees_on_the_bundled_model(bundled_lm):
    pairs = load_pairs(SAMPLE_PAIRS, limit=4, seed=0)
    shared = alignment_accuracy(bundled_lm, pairs)
    flat = alignment_accuracy(bundled_lm, pairs, share=False)
    for a, b in zip(shared["per_pair"], flat["per_pair"]):
        # sums of ~50 float32 log-probs each, whole sequences against cached prefixes: rounding only
        assert (a["r_chosen"], a["r_rejected"]) == pytest.approx((b["r_chosen"], b["r_rejected"]), abs=1e-3)
    assert [p["outcome"] for p in shared["per_pair"]] == [p["outcome"] for p in flat["per_pair"]]
