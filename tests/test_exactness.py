"""Algorithm 1 is exact: the first token of a block is distributed as the judge's warped
distribution, i.e. as direct prompting with the judge's preference alone.

Chi-squared tests with fixed seeds (so the outcome is reproducible), and two checks that the
test has power: it rejects the drafter's distribution, and it rejects the official code's bug of
resampling from norm(max(0, q - p)).
"""

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

import pjudge_core.sampling as sampling
from pjudge_core import SamplingConfig, direct_prompt, persona_judge, prompt_ids
from pjudge_core.sampling import warped_probs

QUERY, A, B = "Describe a sunset", "Be concise.", "Be imaginative."
N = 800
ALPHA = 1e-3


def first_tokens(sample, seeds):
    return np.array([sample(seed).token_ids[0] for seed in seeds])


def exact_first_token_distribution(lm, preference):
    ids = torch.tensor([prompt_ids(lm.tokenizer, QUERY, [preference])])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[:, -1, :]
    return warped_probs(logits, SamplingConfig().processors())[0].numpy().astype(float)


def goodness_of_fit(tokens, probs):
    """Chi-squared against exact probabilities, pooling cells with expected count < 5."""
    counts = np.bincount(tokens, minlength=len(probs)).astype(float)
    expected = probs * len(tokens)
    if counts[expected == 0].sum() > 0:
        return 0.0  # a token the distribution cannot produce: certainly not this distribution
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue


@pytest.fixture(scope="module")
def samples(tiny_lm):
    pj = first_tokens(lambda s: persona_judge(tiny_lm, QUERY, A, B, max_new_tokens=1, seed=s), range(N))
    direct_b = first_tokens(lambda s: direct_prompt(tiny_lm, QUERY, [B], max_new_tokens=1, seed=s), range(N, 2 * N))
    return pj, direct_b


def test_first_token_follows_the_judges_distribution(tiny_lm, samples):
    pj, _ = samples
    assert goodness_of_fit(pj, exact_first_token_distribution(tiny_lm, B)) > ALPHA


def test_first_token_distribution_equals_direct_prompting_with_the_judges_preference(samples):
    pj, direct_b = samples
    tokens = np.union1d(pj, direct_b)
    table = np.array([[np.sum(pj == t) for t in tokens], [np.sum(direct_b == t) for t in tokens]])
    assert chi2_contingency(table).pvalue > ALPHA


def test_the_test_has_power_against_the_drafters_distribution(tiny_lm, samples):
    pj, _ = samples
    p_a, p_b = exact_first_token_distribution(tiny_lm, A), exact_first_token_distribution(tiny_lm, B)
    assert 0.5 * np.abs(p_a - p_b).sum() > 0.2  # the two preferences really differ in this model
    assert goodness_of_fit(pj, p_a) < ALPHA


def test_the_test_catches_resampling_from_the_drafts_excess(tiny_lm, monkeypatch):
    def official_bug(p, q):
        residual = torch.clamp(q - p, min=0)
        return residual / residual.sum() if residual.sum() > 0 else p

    monkeypatch.setattr(sampling, "residual_distribution", official_bug)
    buggy = first_tokens(lambda s: persona_judge(tiny_lm, QUERY, A, B, max_new_tokens=1, seed=s), range(N))
    assert goodness_of_fit(buggy, exact_first_token_distribution(tiny_lm, B)) < ALPHA
