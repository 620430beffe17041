"""The accept/reject step and the warping, on hand-built distributions."""

import numpy as np
import pytest
import torch
from scipy.stats import kstest

from pjudge_core import DecodeSettings
from pjudge_core.engine.sampling import (
    Uniforms,
    Warping,
    acceptance_ratio,
    greedy_judging,
    official_residual,
    residual_distribution,
    sample_index,
    speculative_sampling,
)

P = torch.tensor([0.5, 0.3, 0.2, 0.0])
Q = torch.tensor([0.25, 0.25, 0.25, 0.25])


def test_draft_is_accepted_when_u_is_at_most_p_over_q():
    # p/q for token 1 is 0.3/0.25 > 1: always accepted; token 2 has p/q = 0.8.
    assert speculative_sampling(P, Q, 1, u=0.999, resample_uniform=0.5).decision == "accepted"
    assert speculative_sampling(P, Q, 2, u=0.8, resample_uniform=0.5).decision == "accepted"
    assert speculative_sampling(P, Q, 2, u=0.81, resample_uniform=0.5).decision == "resampled"


def test_token_outside_judge_support_is_always_rejected():
    judged = speculative_sampling(P, Q, 3, u=0.0, resample_uniform=0.5)
    assert judged.decision == "resampled"
    assert judged.rejected_token_id == 3
    assert acceptance_ratio(0.0, 0.25) == 0.0


def test_rejection_resamples_from_positive_part_of_p_minus_q():
    residual = residual_distribution(P, Q)
    assert torch.allclose(residual, torch.tensor([0.25, 0.05, 0.0, 0.0]) / 0.30)
    # Whatever the uniform, a resample lands only where p > q: tokens 0 and 1.
    tokens = {speculative_sampling(P, Q, 3, u=0.9, resample_uniform=x).token_id for x in np.linspace(0, 0.999, 50)}
    assert tokens == {0, 1}


def test_residual_falls_back_to_p_when_p_equals_q():
    assert torch.equal(residual_distribution(P, P.clone()), P)


def test_sample_index_follows_the_cdf_and_skips_zero_mass():
    probs = torch.tensor([0.0, 0.5, 0.0, 0.5])
    assert sample_index(probs, 0.0) == 1
    assert sample_index(probs, 0.49) == 1
    assert sample_index(probs, 0.5) == 3
    assert sample_index(probs, 0.999999) == 3


def test_greedy_keeps_draft_iff_p_at_least_q():
    assert greedy_judging(P, Q, 0).decision == "accepted"
    judged = greedy_judging(P, Q, 2)
    assert (judged.decision, judged.token_id, judged.u) == ("resampled", 0, None)


def warped(logits, **settings):
    return Warping(DecodeSettings(**settings)).probs(logits, [[]] * logits.shape[0])


def test_warping_applies_temperature_top_k_and_top_p_with_float32_output():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]], dtype=torch.bfloat16)
    probs = warped(logits, temperature=1.0, top_k=3, top_p=1.0)
    assert probs.dtype == torch.float32
    assert probs[0, 3:].sum() == 0 and torch.isclose(probs.sum(), torch.tensor(1.0))
    top_p = warped(logits.float(), temperature=1.0, top_k=0, top_p=0.5)
    assert (top_p[0] > 0).sum() == 1  # the top token alone holds ~64% of the mass
    hot = warped(logits.float(), temperature=2.0, top_k=0, top_p=1.0)
    assert hot[0, 0] < torch.softmax(logits.float(), -1)[0, 0]
    greedy = warped(logits.float(), greedy=True, top_k=1)  # greedy ignores the warpers
    assert torch.allclose(greedy, torch.softmax(logits.float(), -1))


def test_repetition_penalty_uses_each_rows_own_output_prefix():
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5]] * 3)
    warping = Warping(DecodeSettings(repetition_penalty=2.0, greedy=True))
    processed = warping.logits(logits, [[], [0], [0, 2]])
    assert processed[0].tolist() == [2.0, 1.0, -1.0, 0.5]  # no output yet: nothing to penalise
    assert processed[1].tolist() == [1.0, 1.0, -1.0, 0.5]  # positive logit divided by the penalty
    assert processed[2].tolist() == [1.0, 1.0, -2.0, 0.5]  # negative logit multiplied by it


def test_no_repeat_ngram_bans_the_token_that_would_repeat_an_ngram_of_the_output():
    warping = Warping(DecodeSettings(no_repeat_ngram_size=2, greedy=True))
    probs = warping.probs(torch.zeros(2, 4), [[1, 2, 1], [1, 2, 3]])
    assert probs[0, 2] == 0 and probs[0, [0, 1, 3]].sum() == pytest.approx(1.0)  # "1 2" seen: after 1, no 2
    assert (probs[1] > 0).all()  # after 3 nothing is banned


def test_the_official_rule_resamples_from_the_drafts_excess_when_its_coin_says_so():
    p, q = torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.2, 0.5, 0.3])
    assert torch.allclose(residual_distribution(p, q), torch.tensor([1.0, 0.0, 0.0]))
    # The official code's branch is the sign of sum(p - q), zero up to rounding: a fair coin.
    assert torch.allclose(official_residual(p, q, 0.2), torch.tensor([0.0, 1.0, 0.0]))  # the draft's excess
    assert torch.allclose(official_residual(p, q, 0.7), torch.tensor([1.0, 0.0, 0.0]))  # the judge's, as Algorithm 1
    judged = speculative_sampling(p, q, 1, u=0.99, resample_uniform=0.5, residual=official_residual, coin=0.2)
    assert (judged.decision, judged.token_id) == ("resampled", 1)  # the rejected draft itself comes back
    assert greedy_judging(p, q, 1, official_residual, 0.2).token_id == 1
    assert greedy_judging(p, q, 1, official_residual, 0.7).token_id == 0


def test_uniforms_are_keyed_by_seed_and_position():
    a, b = Uniforms(7), Uniforms(7)
    assert np.array_equal(a.at(3), b.at(3))
    assert not np.array_equal(a.at(3), a.at(4))
    assert not np.array_equal(a.at(3), Uniforms(8).at(3))
    assert Uniforms(None).seed >= 0


def test_a_positions_uniforms_do_not_depend_on_what_was_asked_before():
    ahead, fresh = Uniforms(11), Uniforms(11)
    for position in (0, 63, 64, 200, 5):
        ahead.at(position)
    assert [ahead.at(p) for p in (5, 64, 130)] == [fresh.at(p) for p in (130, 64, 5)][::-1]


def test_the_uniforms_are_uniform_and_uncorrelated_across_seeds_positions_and_roles():
    numbers = np.array([Uniforms(seed).at(position) for seed in range(40) for position in range(100)])
    for role in range(4):  # Kolmogorov-Smirnov against U(0, 1), each of the four numbers
        assert kstest(numbers[:, role], "uniform").pvalue > 1e-3
    correlations = np.corrcoef(numbers.T)[np.triu_indices(4, 1)]
    assert np.abs(correlations).max() < 0.05  # 4000 pairs: |r| ~ 0.016 by chance
    by_position = numbers.reshape(40, 100, 4)[:, :-1, 0].ravel(), numbers.reshape(40, 100, 4)[:, 1:, 0].ravel()
    assert abs(np.corrcoef(*by_position)[0, 1]) < 0.05


@pytest.mark.parametrize("settings", [DecodeSettings(), DecodeSettings(top_k=3, top_p=0.5, temperature=0.7),
                                      DecodeSettings(top_k=5, top_p=1.0, repetition_penalty=1.3)])
def test_warping_the_top_candidates_only_gives_the_whole_vocabulary_distribution(settings):
    torch.manual_seed(0)
    logits = torch.randn(6, 500) * 3
    if settings.top_p == 1.0:  # (top-p breaks ties in sort order, which no implementation fixes)
        logits[0, :8] = 10.0  # ties at the k-th logit: every tied token stays a candidate
    warping = Warping(settings)
    prefixes = [[11, 12], [], [5], [0, 0], [7, 8, 9], [3]]
    whole = torch.softmax(warping.logits(logits, prefixes), dim=-1)
    fast = warping.probs(logits, prefixes)
    assert torch.allclose(fast, whole, atol=1e-6) and ((fast > 0) == (whole > 0)).all()
    if settings.top_p == 1.0:
        assert (fast[0, :8] > 0).all()
