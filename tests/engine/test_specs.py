"""Run specs: one string naming a method, its options and its personas."""

import pytest

from pjudge_core import DecodeSettings, InputError, RunSpec, generate, parse_specs

PREFS = ["Be concise.", "Be imaginative.", "Be funny."]


@pytest.mark.parametrize("text, key, label, slug", [
    ("persona-judge", "persona-judge", "Persona-judge", "persona-judge"),
    ("persona-judge-base", "persona-judge-base", "Persona-judge-Base", "persona-judge-base"),
    ("persona-judge(alternate=false)", "persona-judge-base", "Persona-judge-Base", "persona-judge-base"),
    ("persona-judge(lam=2)", "persona-judge(lam=2)", "Persona-judge (λ=2)", "persona-judge-lam-2"),
    ("direct", "direct", "Direct prompting", "direct"),
    ("direct[A]", "direct[A]", "A alone", "direct-a"),
    ("direct[b]", "direct[B]", "B alone", "direct-b"),
    ("direct[]", "direct[]", "No preference", "direct-none"),
    ("fusion", "fusion", "Fusion (α=0)", "fusion"),
    ("fusion(alpha=0,weights=1:1)", "fusion", "Fusion (α=0)", "fusion"),
    ("Fusion( alpha = 0.5 , weights=2:1 )", "fusion(alpha=0.5,weights=2:1)", "Fusion (α=0.5; w=2:1)",
     "fusion-alpha-0-5-weights-2-1"),
    ("official", "official", "Official code", "official"),
    ("persona-judge[A,C]", "persona-judge[A,C]", "Persona-judge (A,C)", "persona-judge-a-c"),
])
def test_specs_have_a_canonical_key_a_label_and_a_slug(text, key, label, slug):
    spec = RunSpec.parse(text)
    assert (spec.key, spec.label, spec.slug) == (key, label, slug)
    assert RunSpec.parse(spec.key) == spec  # the key reads back as the same spec


def test_persona_judge_and_its_base_variant_never_share_a_key():
    keys = {s.key for s in parse_specs("persona-judge,persona-judge-base,official,official-base")}
    assert len(keys) == 4


def test_a_list_splits_at_top_level_commas_only():
    specs = parse_specs("persona-judge, direct[A,B], fusion(alpha=0.5,weights=2:1)")
    assert [s.key for s in specs] == ["persona-judge", "direct[A,B]", "fusion(alpha=0.5,weights=2:1)"]
    assert parse_specs(["direct", "direct[]"])[1].personas == ()


@pytest.mark.parametrize("text, message", [
    ("beam-search", "Unknown method 'beam-search'"),
    ("fusion(beta=1)", "fusion has no option 'beta'"),
    ("fusion(alpha)", "key=value"),
    ("fusion(alpha=big)", "alpha must be a number"),
    ("fusion(weights=a:b)", "weights are numbers separated by ':'"),
    ("direct[E]", "personas are labelled A, B, C, D"),
    ("direct[A,A]", "names a persona twice"),
    ("persona-judge(lam=0)", "λ .* at least 1"),
    ("persona-judge(seed=3)", "has no option 'seed'"),
    ("persona-judge(alternate=2)", "alternate must be true or false"),
    ("direct(", "Cannot read the run spec"),
])
def test_bad_specs_get_one_sentence(text, message):
    with pytest.raises(InputError, match=message):
        RunSpec.parse(text)


def test_duplicates_and_empty_lists_are_refused():
    with pytest.raises(InputError, match="listed twice"):
        parse_specs("fusion,fusion(alpha=0)")
    with pytest.raises(InputError, match="No run spec"):
        parse_specs(" , ")


def test_check_refuses_what_a_run_would_refuse_without_a_model():
    settings = DecodeSettings()
    RunSpec.parse("persona-judge").check(PREFS, settings)
    with pytest.raises(InputError, match="names persona C, but the run has 2 preferences"):
        RunSpec.parse("direct[C]").check(PREFS[:2], settings)
    with pytest.raises(InputError, match="exactly two"):
        RunSpec.parse("persona-judge-base").check(PREFS, settings)
    with pytest.raises(InputError, match="one weight per persona"):
        RunSpec.parse("fusion(weights=1:2:3)").check(PREFS[:2], settings)


def test_a_spec_runs_its_method_with_its_personas_options_and_overrides(tiny_lm):
    base = DecodeSettings(max_new_tokens=20, seed=4)
    spec = RunSpec.parse("fusion[A,C](alpha=0.5,lam=2)")
    result = spec.run(tiny_lm, "Describe a sunset", PREFS, base)
    expected = generate(tiny_lm, "fusion", "Describe a sunset", {"A": PREFS[0], "C": PREFS[2]},
                        base.replace(lam=2), alpha=0.5)
    assert result.token_ids == expected.token_ids
    assert result.settings["labels"] == ["A", "C"] and result.settings["lam"] == 2
    alone = RunSpec.parse("direct[B]").run(tiny_lm, "Describe a sunset", PREFS, base)
    assert alone.settings["preferences"] == [PREFS[1]]
