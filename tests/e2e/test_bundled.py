"""End-to-end on the bundled SmolLM2-135M-Instruct (offline). Slow: seconds per test."""

import pytest

from pjudge_core import BUNDLED, DecodeSettings, direct_prompt, generate, persona_judge
from pjudge_core.engine.methods import METHODS
from pjudge_core.evaluation.meters.repetition import repeated_ngram_share
from pjudge_core.presets import pair
from pjudge_core.ui.models import first_run

pytestmark = pytest.mark.slow
QUERY = "Describe a sunset over the sea."
A, B = "Be richly descriptive.", "Be imaginative."


def test_bundled_model_loads_offline_with_a_chat_template(bundled_lm):
    assert "SmolLM2" in bundled_lm.name and bundled_lm.dtype == "float32"
    assert bundled_lm.tokenizer.chat_template
    assert bundled_lm.eos_token_ids


def test_persona_judge_writes_english_and_matches_the_reference(bundled_lm):
    result = persona_judge(bundled_lm, QUERY, A, B, max_new_tokens=24, seed=0)
    assert len(result.steps) == 24 and result.text.strip()
    assert sum(c.isalpha() for c in result.text) > 40
    assert 0.5 < result.stats["acceptance_rate"] <= 1  # two compatible preferences agree mostly
    slow = METHODS["persona-judge"].reference(bundled_lm, QUERY, [A, B], DecodeSettings(max_new_tokens=24, seed=0))
    assert [(s.token_id, s.decision, s.drafter) for s in result.steps] == slow


def test_direct_prompting_stops_at_end_of_sequence(bundled_lm):
    result = direct_prompt(bundled_lm, "Answer with one word: what colour is the sky?", [A], max_new_tokens=64,
                           greedy=True)
    assert result.stats["stopped_by"] == "eos" and result.token_ids[-1] in bundled_lm.eos_token_ids
    assert len(result.steps) < 64


def test_the_first_run_a_visitor_sees_is_fluent_for_seeds_0_to_9(bundled_lm):
    """The app's defaults (pair, query, the bundled model's recommended settings): no loops.
    Without the repetition penalty seed 0 loops ("a canvas of a single canvas, ...", 52% of its
    4-grams repeated); each seed here must stay under 10%."""
    pair_name, query, settings = first_run(BUNDLED)
    preferences = list(pair(pair_name))
    shares = [repeated_ngram_share(generate(bundled_lm, "persona-judge", query, preferences,
                                            settings.replace(seed=seed)).token_ids) for seed in range(10)]
    assert max(shares) < 0.10, shares


def test_the_default_pair_pulls_apart_persona_judge_rejects_a_visible_share(bundled_lm):
    """The bundled model's default pair (one it follows: data/sensitivity_bundled.json) makes
    Persona-judge reject drafts: acceptance under 0.85 on the default run, seeds 0-2, 64 tokens
    (the paper's vivid + creative accepts 0.83-0.95 of them per query on this model: docs/evaluation.md)."""
    pair_name, query, settings = first_run(BUNDLED)
    runs = [generate(bundled_lm, "persona-judge", query, list(pair(pair_name)),
                     settings.replace(seed=seed, max_new_tokens=64)) for seed in range(3)]
    accepted = sum(r.stats["decisions"]["accepted"] for r in runs)
    judged = accepted + sum(r.stats["decisions"]["resampled"] for r in runs)
    assert accepted / judged < 0.85, accepted / judged

