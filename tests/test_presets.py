"""Preset files: the shipped ones load; broken ones give one readable sentence."""

import json

import pytest

from pjudge_core import InputError
from pjudge_core import presets as P


def test_shipped_presets_load_and_pairs_resolve():
    data = P.load_presets()
    assert {"elementary", "PhD", "concise", "detailed", "friendly", "unfriendly", "vivid", "creative",
            "helpful", "harmless", "humour", "touching", "professional", "informative", "correct"} <= set(data.personas)
    for name in ("vivid + creative", "concise + informative", "elementary + PhD"):
        a, b = P.pair(name)
        assert a.strip() and b.strip() and a != b
    assert P.pair("elementary + PhD")[0] == P.persona_text("elementary")


def test_model_presets_bundled_first():
    ids = [m.id for m in P.model_presets()]
    assert ids[0] == "bundled"
    for hub in ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct",
                "Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "google/gemma-2-2b-it",
                "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "princeton-nlp/Llama-3-Base-8B-SFT"):
        assert hub in ids
    assert P.example_queries()


def test_unknown_pair_lists_known_names():
    with pytest.raises(InputError) as err:
        P.pair("no such pair")
    msg = str(err.value)
    assert "no such pair" in msg and "vivid + creative" in msg and "\n" not in msg


def test_unknown_persona_lists_known_names():
    with pytest.raises(InputError, match="known personas: .*vivid"):
        P.persona_text("nobody")


def _write(tmp_path, personas=None, pairs=None, models=None, queries=None):
    (tmp_path / "personas.json").write_text(json.dumps(
        {"personas": personas if personas is not None else {"x": {"text": "be x"}, "y": {"text": "be y"}}}))
    if pairs is not None:
        (tmp_path / "pairs.json").write_text(json.dumps({"pairs": pairs}))
    if models is not None:
        (tmp_path / "models.json").write_text(json.dumps({"models": models}))
    if queries is not None:
        (tmp_path / "queries.json").write_text(json.dumps({"queries": queries}))
    return tmp_path


def test_custom_folder_and_adding_an_entry(tmp_path):
    _write(tmp_path, pairs={"x + y": {"a": "x", "b": "y"}}, models=[{"id": "m"}], queries=["hi"])
    assert P.pair("x + y", dir=tmp_path) == ("be x", "be y")
    assert P.model_presets(dir=tmp_path)[0].label == "m"


@pytest.mark.parametrize("kwargs, expected", [
    ({"pairs": {"x + z": {"a": "x", "b": "z"}}}, r"pairs.json, pair 'x \+ z': 'b' names the unknown persona 'z'"),
    ({"personas": {"x": {"txt": "oops"}}}, r"personas.json, persona 'x': 'text' must be a non-empty string"),
    ({"personas": {"x": "just a string"}}, r"persona 'x' must be an object"),
    ({"models": [{"id": "m"}, {"id": "m"}]}, r"models.json, entry 2: model 'm' is listed twice"),
    ({"queries": ["ok", ""]}, r"queries.json, entry 2"),
])
def test_validation_errors_are_readable(tmp_path, kwargs, expected):
    _write(tmp_path, **kwargs)
    with pytest.raises(InputError, match=expected):
        P.load_presets(tmp_path)


def test_invalid_json_names_file_and_line(tmp_path):
    (tmp_path / "personas.json").write_text('{"personas": {"x": {"text": "a",}}}')
    with pytest.raises(InputError, match=r"personas.json is not valid JSON \(line 1"):
        P.load_presets(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        P.load_presets(tmp_path / "nope")
