"""DecodeSettings: one place for the defaults, validated on construction with readable errors."""

import dataclasses

import pytest

from pjudge_core import DecodeSettings, InputError


def test_defaults_are_the_papers_settings():
    s = DecodeSettings()
    assert (s.max_new_tokens, s.lam, s.alternate, s.temperature, s.top_k, s.top_p, s.greedy, s.seed) == \
        (128, 4, True, 0.9, 20, 0.9, False, None)
    assert (s.repetition_penalty, s.no_repeat_ngram_size) == (1.0, 0)


def test_settings_are_immutable_and_replace_validates_again():
    s = DecodeSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lam = 2
    assert s.replace(lam=2).lam == 2 and s.lam == 4
    with pytest.raises(InputError, match="λ"):
        s.replace(lam=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lam=0), "λ .* at least 1"),
    (dict(lam=1.5), "λ .* whole number"),
    (dict(lam=True), "λ .* whole number"),
    (dict(max_new_tokens=0), "Max new tokens must be at least 1"),
    (dict(temperature=0.0), "Temperature must be above 0"),
    (dict(temperature=float("nan")), "Temperature must be a finite number"),
    (dict(top_k=-1), "Top-k must be at least 0"),
    (dict(top_p=0), r"Top-p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"Top-p must be in \(0, 1\]"),
    (dict(seed=-3), "Seed must be at least 0"),
    (dict(seed="7"), "Seed must be a whole number"),
    (dict(repetition_penalty=0), "Repetition penalty must be above 0"),
    (dict(no_repeat_ngram_size=-1), "No-repeat n-gram size must be at least 0"),
    (dict(greedy="yes"), "Greedy must be true or false"),
])
def test_bad_values_raise_one_readable_sentence(kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        DecodeSettings(**kwargs)
    assert "\n" not in str(info.value)


def test_greedy_needs_no_temperature():
    assert DecodeSettings(greedy=True, temperature=0.0).greedy


def test_from_inputs_maps_empty_fields_to_the_defaults_never_to_other_values():
    # The app's form fields arrive as None or "" when cleared: the default applies, whatever it is.
    s = DecodeSettings.from_inputs(top_p=None, temperature="", seed="", lam=None, top_k="  ")
    assert s == DecodeSettings()
    assert DecodeSettings.from_inputs(top_p="0.5", lam=3.0, seed="12", greedy="true", max_new_tokens="64") == \
        DecodeSettings(top_p=0.5, lam=3, seed=12, greedy=True, max_new_tokens=64)


@pytest.mark.parametrize("raw, message", [
    (dict(seed="abc"), "Seed must be a number; got 'abc'"),
    (dict(lam=2.5), "λ .* must be a whole number; got 2.5"),
    (dict(top_k="inf"), "Top-k must be a finite number"),
    (dict(greedy="maybe"), "Greedy must be true or false"),
    (dict(temperature=[1]), "Temperature must be a number"),
    (dict(beam_width=3), "Unknown decoding setting 'beam_width'"),
])
def test_from_inputs_turns_malformed_values_into_input_errors(raw, message):
    with pytest.raises(InputError, match=message):
        DecodeSettings.from_inputs(**raw)
