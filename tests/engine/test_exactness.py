"""The decoders sample from the distributions they claim, checked statistically.

* Persona-judge (Algorithm 1) is exact: a block's tokens are distributed as the judge's processed
  distribution, i.e. as direct prompting with the judge's preference alone; with three personas
  the first block's judge is B, not A or C.
* Fusion's first token is distributed as softmax(warp(fused logits)), computed here independently
  from the model's raw logits, for α = 0 and α > 0.
* With a repetition penalty, a later token follows the *penalised* judge distribution.

Chi-squared tests with fixed seeds (so the outcome is reproducible), each with a check that the
same test has power: it rejects the drafter's distribution, the official code's resampling bug,
an unpenalised or unfused alternative. Every test runs on the tiny model in float32, in float32 with
its linear layers packed for oneDNN (as `load_model` packs them on a CPU), and in bfloat16 (where a
row's p and q depend on its batch by rounding, and each must still be exact with respect to the p
and q it was decided with): the expected distributions come from the same
float32 head over the model's hidden states that the engine uses (`runner.project_to_vocabulary`).
"""


import numpy as np
import pytest
import torch
from conftest import in_bfloat16, in_packed
from scipy.stats import chi2_contingency, chisquare

from pjudge_core import (
    DecodeSettings,
    LoadedModel,
    Request,
    direct_prompt,
    generate,
    generate_many,
    persona_judge,
    prompt_ids,
)
from pjudge_core.engine.runner import project_to_vocabulary

QUERY, A, B, C = "Describe a sunset", "Be concise.", "Be imaginative.", "Be funny."
N = 800
ALPHA = 1e-3
SAMPLING = DecodeSettings()  # the paper's warping: T 0.9, top-k 20, top-p 0.9


def first_tokens(sample, seeds):
    return np.array([sample(seed).token_ids[0] for seed in seeds])


# Other methods decoded in the same batches as the runs under test (another query, other budgets).
COMPANIONS = ["direct", "fusion(alpha=0.5)", "direct[A]", "persona-judge-base", "official", "persona-judge(lam=2)"]


def runs_in_batches(lm, spec, preferences, settings, seeds, rows=16, **options):
    """Each seed's run of `spec`, decoded in batches of `rows` where half the rows run other methods."""
    requests = []
    for seed in seeds:
        requests.append(Request(spec, QUERY, preferences, settings.replace(seed=seed), options))
        requests.append(Request(COMPANIONS[seed % len(COMPANIONS)], "Tell me about the sea.", [A, B],
                                settings.replace(seed=seed + 1, max_new_tokens=1 + seed % 7)))
    return generate_many(lm, requests, rows=rows)[::2]


def in_dtype(model: LoadedModel, dtype: str) -> LoadedModel:
    if dtype == "float32":
        return model
    return in_packed(model) if dtype == "packed" else in_bfloat16(model)


@pytest.fixture(scope="module", params=["float32", "bfloat16", "packed"])
def lm(request, tiny_lm):
    return in_dtype(tiny_lm, request.param)


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def repeating_lm(request, repetitive_lm):
    return in_dtype(repetitive_lm, request.param)


def raw_logits(lm, preferences, output=()):
    """The unprocessed next-token logits, as the engine computes them: the float32 head over the hidden state."""
    ids = torch.tensor([prompt_ids(lm.tokenizer, QUERY, preferences) + list(output)])
    with torch.no_grad():
        hidden = lm.model.get_decoder()(input_ids=ids).last_hidden_state[0, -1]
        return project_to_vocabulary(lm.model, hidden)


def warp(logits, settings=SAMPLING):
    """temperature, top-k, top-p by hand (not through the engine's Warping), then softmax."""
    logits = logits / settings.temperature
    kth = torch.topk(logits, settings.top_k).values[-1]
    logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    order = torch.argsort(probs, descending=True)
    cumulative = torch.cumsum(probs[order], 0)
    keep = cumulative - probs[order] < settings.top_p  # the smallest set holding top_p of the mass
    mask = torch.zeros_like(probs, dtype=torch.bool)
    mask[order[keep]] = True
    probs = probs.masked_fill(~mask, 0)
    return (probs / probs.sum()).numpy().astype(float)


def goodness_of_fit(tokens, probs, name: str = ""):
    """Chi-squared against exact probabilities, pooling cells with expected count < 5 (the p-value
    is printed with `name`, visible under ``pytest -s``)."""
    p = _goodness_of_fit(tokens, probs)
    print(f"p-value {p:.3g}  {name}")
    return p


def _goodness_of_fit(tokens, probs):
    counts = np.bincount(tokens, minlength=len(probs)).astype(float)
    expected = probs * len(tokens)
    if counts[expected == 0].sum() > 0:
        return 0.0  # a token the distribution cannot produce: certainly not this distribution
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue


def total_variation(p, q):
    return 0.5 * np.abs(p - q).sum()


# --------------------------------------------------------------------------- Persona-judge, two personas

@pytest.fixture(scope="module")
def samples(lm):
    torch.set_num_threads(1)  # module fixtures run before the per-test thread setting (conftest)
    pj = first_tokens(lambda s: persona_judge(lm, QUERY, A, B, max_new_tokens=1, seed=s), range(N))
    direct_b = first_tokens(lambda s: direct_prompt(lm, QUERY, [B], max_new_tokens=1, seed=s), range(N, 2 * N))
    return pj, direct_b


def test_first_token_follows_the_judges_distribution(lm, samples):
    pj, _ = samples
    assert goodness_of_fit(pj, warp(raw_logits(lm, [B])), "2 personas: first token vs the judge B") > ALPHA


def test_first_token_distribution_equals_direct_prompting_with_the_judges_preference(samples):
    pj, direct_b = samples
    tokens = np.union1d(pj, direct_b)
    table = np.array([[np.sum(pj == t) for t in tokens], [np.sum(direct_b == t) for t in tokens]])
    p = chi2_contingency(table).pvalue
    print(f"p-value {p:.3g}  first token: persona-judge vs direct prompting with B (two samples)")
    assert p > ALPHA


def test_the_test_has_power_against_the_drafters_distribution(lm, samples):
    pj, _ = samples
    p_a, p_b = warp(raw_logits(lm, [A])), warp(raw_logits(lm, [B]))
    assert total_variation(p_a, p_b) > 0.2  # the two preferences really differ in this model
    assert goodness_of_fit(pj, p_a, "power: first token vs the drafter A") < ALPHA


def test_the_test_catches_the_official_codes_resampling_rule(lm):
    """The official code resamples from the draft's excess about half the time (`official_residual`)."""
    official = first_tokens(lambda s: generate(lm, "official", QUERY, [A, B],
                                               SAMPLING.replace(max_new_tokens=1, seed=s)), range(N))
    assert goodness_of_fit(official, warp(raw_logits(lm, [B])), "power: official code vs the judge B") < ALPHA


# --------------------------------------------------------------------------- three personas

def test_with_three_personas_the_first_block_is_judged_by_b_not_a_or_c(lm):
    three = first_tokens(lambda s: generate(lm, "persona-judge", QUERY, [A, B, C],
                                            SAMPLING.replace(max_new_tokens=1, seed=s)), range(N))
    p = {label: warp(raw_logits(lm, [text])) for label, text in zip("ABC", (A, B, C))}
    assert goodness_of_fit(three, p["B"], "3 personas: first token vs the judge B") > ALPHA
    for other in "AC":  # power: the test tells B from the drafter A and from the third persona C
        assert total_variation(p[other], p["B"]) > 0.2
        assert goodness_of_fit(three, p[other], f"power: 3 personas vs {other}") < ALPHA


# --------------------------------------------------------------------------- fusion

@pytest.mark.parametrize("alpha, weights", [(0.0, None), (0.0, [3.0, 1.0]), (1.0, None)])
def test_fusions_first_token_follows_the_fused_distribution(lm, alpha, weights):
    fused_tokens = first_tokens(
        lambda s: generate(lm, "fusion", QUERY, [A, B], SAMPLING.replace(max_new_tokens=1, seed=s),
                           alpha=alpha, weights=weights), range(N))
    w = np.array(weights or [1.0, 1.0])
    w = w / w.sum()
    mixed = w[0] * raw_logits(lm, [A]) + w[1] * raw_logits(lm, [B])
    base = raw_logits(lm, [])
    expected = warp(base + (1 + alpha) * (mixed - base))
    assert goodness_of_fit(fused_tokens, expected, f"fusion α={alpha} w={weights}: vs fused") > ALPHA
    # Power: not the average of the two personas' distributions (a mixture, not a fusion) ...
    mixture = 0.5 * warp(raw_logits(lm, [A])) + 0.5 * warp(raw_logits(lm, [B]))
    assert total_variation(mixture, expected) > 0.2
    assert goodness_of_fit(fused_tokens, mixture, f"power: fusion α={alpha} w={weights} vs mixture") < ALPHA
    if alpha > 0:  # ... and the contrast really changes the plain fusion
        plain = warp(mixed)
        assert total_variation(plain, expected) > 0.2
        assert goodness_of_fit(fused_tokens, plain, f"power: fusion α={alpha} vs α=0") < ALPHA


# --------------------------------------------------------------------------- repetition penalty

PENALTY = 1.5
PENALISED = SAMPLING.replace(max_new_tokens=2, lam=2, alternate=False, repetition_penalty=PENALTY)


def second_token_follows_the_penalised_judge(lm, runs, label: str) -> None:
    """Given the most common first token x, the second token follows B's distribution with x penalised
    (and not the unpenalised one)."""
    firsts = np.array([r.token_ids[0] for r in runs])
    x = int(np.bincount(firsts).argmax())
    seconds = np.array([r.token_ids[1] for r in runs if r.token_ids[0] == x])
    assert len(seconds) > 250
    logits = raw_logits(lm, [B], output=[x])
    penalised = logits.clone()
    penalised[x] = penalised[x] / PENALTY if penalised[x] > 0 else penalised[x] * PENALTY
    expected, unpenalised = warp(penalised), warp(logits)
    assert goodness_of_fit(seconds, expected, f"{label}repetition penalty: 2nd token vs penalised B") > ALPHA
    assert total_variation(expected, unpenalised) > 0.2
    assert goodness_of_fit(seconds, unpenalised, f"power: {label}2nd token vs unpenalised B") < ALPHA


def test_with_a_repetition_penalty_a_later_token_follows_the_penalised_judge(repeating_lm):
    """Persona-judge-Base (B judges every block): given the first token x, the second token is
    distributed as B's distribution with x penalised. Runs whose first token is the most common
    one are kept; the test checks the penalised distribution and rejects the unpenalised one."""
    runs = [generate(repeating_lm, "persona-judge", QUERY, [A, B], PENALISED.replace(seed=s)) for s in range(N)]
    second_token_follows_the_penalised_judge(repeating_lm, runs, "")


# --------------------------------------------------------------------------- the same, decoded in batches

def test_in_batches_with_other_methods_the_first_token_still_follows_the_judge(lm):
    runs = runs_in_batches(lm, "persona-judge", [A, B], SAMPLING.replace(max_new_tokens=1), range(N))
    tokens = np.array([r.token_ids[0] for r in runs])
    p_a, p_b = warp(raw_logits(lm, [A])), warp(raw_logits(lm, [B]))
    assert goodness_of_fit(tokens, p_b, "batched, 2 personas: first token vs the judge B") > ALPHA
    assert goodness_of_fit(tokens, p_a, "power: batched, first token vs the drafter A") < ALPHA


def test_in_batches_with_three_personas_the_first_block_is_judged_by_b(lm):
    runs = runs_in_batches(lm, "persona-judge", [A, B, C], SAMPLING.replace(max_new_tokens=1), range(N))
    tokens = np.array([r.token_ids[0] for r in runs])
    p = {label: warp(raw_logits(lm, [text])) for label, text in zip("ABC", (A, B, C))}
    assert goodness_of_fit(tokens, p["B"], "batched, 3 personas: first token vs the judge B") > ALPHA
    for other in "AC":
        assert goodness_of_fit(tokens, p[other], f"power: batched, 3 personas vs {other}") < ALPHA


def test_in_batches_fusion_still_follows_the_fused_distribution(lm):
    alpha, weights = 1.0, [3.0, 1.0]
    runs = runs_in_batches(lm, "fusion", [A, B], SAMPLING.replace(max_new_tokens=1), range(N),
                           alpha=alpha, weights=weights)
    tokens = np.array([r.token_ids[0] for r in runs])
    mixed = 0.75 * raw_logits(lm, [A]) + 0.25 * raw_logits(lm, [B])
    base = raw_logits(lm, [])
    expected = warp(base + (1 + alpha) * (mixed - base))
    assert goodness_of_fit(tokens, expected, "batched fusion α=1 w=3:1: vs fused") > ALPHA
    assert goodness_of_fit(tokens, warp(mixed), "power: batched fusion α=1 vs α=0") < ALPHA


def test_in_batches_a_later_token_follows_the_penalised_judge(repeating_lm):
    runs = runs_in_batches(repeating_lm, "persona-judge", [A, B], PENALISED, range(N))
    second_token_follows_the_penalised_judge(repeating_lm, runs, "batched, ")
