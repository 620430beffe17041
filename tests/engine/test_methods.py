"""The methods behind `generate`: N personas, Persona-judge-Base, direct, fusion, the official
code's behaviour and repetition control, on a tiny random model."""

import itertools

import pytest

from pjudge_core import (
    METHODS,
    DecodeSettings,
    InputError,
    RunSpec,
    generate,
    prompt_text,
    stream_generate,
)
from pjudge_core.bench.batch_check import persona_counts

QUERY = "Describe a sunset"
PREFS = ["Be concise.", "Be imaginative.", "Be funny.", "Be formal."]
S = DecodeSettings(max_new_tokens=48, lam=3, seed=5)


def reference(lm, method, preferences, settings, **options):
    """The method's slow reference decoder: [(token_id, decision, drafter)]."""
    return METHODS[method].reference(lm, QUERY, preferences, settings, **options)


def trace(result):
    return [(s.token_id, s.decision, s.drafter) for s in result.steps]


def test_methods_are_listed_with_a_description():
    assert set(METHODS) == {"persona-judge", "direct", "fusion", "official"}
    assert all(len(method.description) > 40 for method in METHODS.values())
    assert "not Algorithm 1" in METHODS["official"].description


EXAMPLES = [(name, spec) for name, method in METHODS.items() for spec in method.examples]


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("method, spec", EXAMPLES)
def test_every_method_matches_its_reference_decoder_on_every_example_spec(tiny_lm, method, spec, greedy):
    """Each registered method's fast decoder (KV cache, engine) against its own slow, literal one."""
    run = RunSpec.parse(spec)
    prefs = PREFS[:max(persona_counts(run))]  # as many personas as the spec takes
    base = S.replace(greedy=greedy, max_new_tokens=24)
    fast = run.run(tiny_lm, QUERY, prefs, base)
    assert trace(fast) == reference(tiny_lm, method, run.preferences(prefs), run.settings(base),
                                    **run.method_options())


@pytest.mark.parametrize("n", [2, 3, 4])
def test_block_b_is_drafted_by_persona_b_mod_n_and_judged_by_the_next(tiny_lm, n):
    result = generate(tiny_lm, "persona-judge", QUERY, PREFS[:n], S.replace(max_new_tokens=90), ignore_eos=True)
    labels = "ABCD"[:n]
    assert result.stats["blocks"] > 2 * n
    for step in result.steps:
        assert step.drafter == labels[step.block % n] and step.judge == labels[(step.block + 1) % n]
    by = result.stats["acceptance_rate_by_drafter"]
    assert set(by) == set(labels)
    for label in labels:
        judged = [s for s in result.steps if s.drafter == label and s.decision != "bonus"]
        assert by[label] == pytest.approx(sum(s.decision == "accepted" for s in judged) / len(judged))
    assert result.settings["labels"] == list(labels)


@pytest.mark.parametrize("n, greedy", [(3, False), (4, True)])
def test_n_persona_runs_match_the_reference_decoder(tiny_lm, n, greedy):
    settings = S.replace(greedy=greedy, max_new_tokens=40)
    fast = generate(tiny_lm, "persona-judge", QUERY, PREFS[:n], settings)
    assert trace(fast) == reference(tiny_lm, "persona-judge", PREFS[:n], settings)


def test_persona_judge_base_keeps_a_drafting_and_b_judging(tiny_lm):
    result = generate(tiny_lm, "persona-judge", QUERY, PREFS[:2], S.replace(alternate=False))
    assert {(s.drafter, s.judge) for s in result.steps} == {("A", "B")}
    assert set(result.stats["acceptance_rate_by_drafter"]) == {"A"}


@pytest.mark.parametrize("method, prefs, settings, message", [
    ("persona-judge", PREFS[:3], S.replace(alternate=False), "Persona-judge-Base .* exactly two"),
    ("persona-judge", PREFS[:1], S, "at least two preferences"),
    ("official", PREFS[:3], S, "two preferences only"),
    ("persona-judge", PREFS + ["Be kind."], S, "At most 4 personas"),
    ("persona-judge", ["Be concise.", "  "], S, "Preference B is empty"),
    ("beam", PREFS[:2], S, "Unknown method 'beam'"),
])
def test_wrong_persona_counts_and_unknown_methods_are_refused(tiny_lm, method, prefs, settings, message):
    with pytest.raises(InputError, match=message):
        generate(tiny_lm, method, QUERY, prefs, settings)


def test_options_belong_to_their_method(tiny_lm):
    with pytest.raises(InputError, match="persona-judge has no option alpha; its options: none"):
        generate(tiny_lm, "persona-judge", QUERY, PREFS[:2], S, alpha=1.0)
    with pytest.raises(InputError, match="max_new_tokens is a decoding setting"):
        generate(tiny_lm, "fusion", QUERY, PREFS[:2], max_new_tokens=3)
    with pytest.raises(InputError, match="one weight per persona"):
        generate(tiny_lm, "fusion", QUERY, PREFS[:2], S, weights=[1.0])
    with pytest.raises(InputError, match="at least 0 and not all 0"):
        generate(tiny_lm, "fusion", QUERY, PREFS[:2], S, weights=[1.0, -1.0])
    with pytest.raises(InputError, match="α must be a finite number of at least 0"):
        generate(tiny_lm, "fusion", QUERY, PREFS[:2], S, alpha=-0.5)


def test_direct_with_one_preference_is_that_persona_alone_and_with_none_no_preference(tiny_lm):
    pj = generate(tiny_lm, "persona-judge", QUERY, PREFS[:2], S.replace(max_new_tokens=1))
    alone = generate(tiny_lm, "direct", QUERY, {"B": PREFS[1]}, S.replace(max_new_tokens=1))
    assert alone.settings["prompt"] == pj.settings["prompts"]["B"]
    none = generate(tiny_lm, "direct", QUERY, [], S.replace(max_new_tokens=1))
    assert none.settings["prompt"] == prompt_text(tiny_lm.tokenizer, QUERY, []) and "system" not in none.settings["prompt"]
    both = generate(tiny_lm, "direct", QUERY, PREFS[:2], S)
    assert all(s.decision == "sampled" and s.p == s.q for s in both.steps)


@pytest.mark.parametrize("alpha, weights, greedy", [(0.0, None, False), (0.5, [2.0, 1.0], False), (2.0, None, True)])
def test_fusion_matches_its_reference_decoder(tiny_lm, alpha, weights, greedy):
    settings = S.replace(greedy=greedy)
    fast = generate(tiny_lm, "fusion", QUERY, PREFS[:2], settings, alpha=alpha, weights=weights)
    assert trace(fast) == reference(tiny_lm, "fusion", PREFS[:2], settings, weights=weights, alpha=alpha)


def test_fusion_records_the_fused_p_and_each_personas_own_probability(tiny_lm):
    result = generate(tiny_lm, "fusion", QUERY, PREFS[:3], S, weights=[2, 1, 1])
    assert result.settings["options"] == {"weights": {"A": 0.5, "B": 0.25, "C": 0.25}, "alpha": 0.0}
    for step in result.steps:
        assert step.decision == "fused" and step.q is None and 0 < step.p <= 1
        assert set(step.persona_p) == {"A", "B", "C"} and all(0 <= v <= 1 for v in step.persona_p.values())
    # a token the fused distribution picked that one persona alone would never pick
    assert any(min(s.persona_p.values()) == 0 for s in result.steps)


def test_fusion_computes_the_no_preference_logits_only_when_alpha_is_positive(tiny_lm):
    plain = generate(tiny_lm, "fusion", QUERY, PREFS[:2], S, alpha=0.0)
    contrast = generate(tiny_lm, "fusion", QUERY, PREFS[:2], S, alpha=1.0)
    # one forward per token, the prompts as rows: two personas, plus no preference only when α > 0
    assert plain.stats["forward_passes"] == plain.stats["new_tokens"] and len(plain.stats["prompt_tokens"]) == 2
    assert contrast.stats["forward_passes"] == contrast.stats["new_tokens"]
    assert len(contrast.stats["prompt_tokens"]) == 3
    assert "none" in contrast.settings["prompts"] and "none" not in plain.settings["prompts"]


def test_official_behaviour_swaps_roles_once_and_never_back(tiny_lm):
    result = generate(tiny_lm, "official", QUERY, PREFS[:2], S.replace(max_new_tokens=60))
    assert result.stats["blocks"] > 3
    for step in result.steps:
        assert (step.drafter, step.judge) == (("A", "B") if step.block == 0 else ("B", "A"))
    fixed = generate(tiny_lm, "official", QUERY, PREFS[:2], S.replace(alternate=False))
    assert {(s.drafter, s.judge) for s in fixed.steps} == {("A", "B")}


@pytest.mark.parametrize("method", ["persona-judge", "direct", "fusion", "official"])
def test_no_repeat_ngram_size_keeps_every_ngram_of_the_output_unique(repetitive_lm, method):
    settings = S.replace(max_new_tokens=200, no_repeat_ngram_size=2)
    ids = generate(repetitive_lm, method, QUERY, PREFS[:2], settings).token_ids
    bigrams = list(zip(ids, ids[1:]))
    assert len(bigrams) == len(set(bigrams))
    free = generate(repetitive_lm, method, QUERY, PREFS[:2], settings.replace(no_repeat_ngram_size=0)).token_ids
    free_bigrams = list(zip(free, free[1:]))
    assert len(free_bigrams) > len(set(free_bigrams)), "the tiny model should repeat itself without the ban"


@pytest.mark.parametrize("greedy", [False, True])
def test_repetition_settings_keep_the_fast_decoder_equal_to_the_reference(repetitive_lm, greedy):
    settings = S.replace(repetition_penalty=1.8, no_repeat_ngram_size=3, greedy=greedy)
    fast = generate(repetitive_lm, "persona-judge", QUERY, PREFS[:2], settings)
    assert trace(fast) == METHODS["persona-judge"].reference(repetitive_lm, QUERY, PREFS[:2], settings)
    plain = generate(repetitive_lm, "persona-judge", QUERY, PREFS[:2], settings.replace(repetition_penalty=1.0,
                                                                                         no_repeat_ngram_size=0))
    assert plain.token_ids != fast.token_ids


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_streams_the_steps_of_its_result(tiny_lm, method):
    stream = stream_generate(tiny_lm, method, QUERY, PREFS[:2], S.replace(max_new_tokens=20))
    seen = [step.token_id for step in stream]
    assert seen == stream.result.token_ids and stream.result.method == method
    again = stream_generate(tiny_lm, method, QUERY, PREFS[:2], S.replace(max_new_tokens=20))
    interleaved = list(itertools.islice(iter(lambda: next(again, None), None), 100))
    assert [s.token_id for s in interleaved] == seen and again.result.token_ids == seen
