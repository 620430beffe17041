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
    _write(tmp_path, pairs={"x + y": {"a": "x", "b": "y"}}, models=[{"id": "m", "settings": {"repetition_penalty": 1.2}}],
           queries=["hi"])
    assert P.pair("x + y", directory=tmp_path) == ("be x", "be y")
    model = P.model_presets(directory=tmp_path)[0]
    assert model.name == "m" and model.decode_settings().repetition_penalty == 1.2


@pytest.mark.parametrize("kwargs, expected", [
    ({"pairs": {"x + z": {"a": "x", "b": "z"}}}, r"pairs.json, pair 'x \+ z', field 'b': names the unknown persona 'z'"),
    ({"personas": {"x": {"txt": "oops"}}}, r"personas.json, persona 'x', field 'txt': is not a known field"),
    ({"personas": {"x": {"group": "g"}}}, r"personas.json, persona 'x', field 'text': is missing"),
    ({"personas": {"x": {"text": "  "}}}, r"personas.json, persona 'x', field 'text': must not be empty"),
    ({"personas": {"x": "just a string"}}, r"personas.json, persona 'x': .*valid dictionary"),
    ({"personas": {}}, r"personas.json, field 'personas'"),
    ({"models": [{"id": "m"}, {"id": "m"}]}, r"models.json, entry 2: model 'm' is listed twice"),
    ({"models": [{"id": "m", "sise": "1B"}]}, r"models.json, entry 1, field 'sise': is not a known field"),
    ({"models": [{"id": "m", "settings": {"top_p": 3}}]}, r"models.json, entry 1, field 'settings': Top-p must be in"),
    ({"models": [{"id": "m", "settings": {"beams": 3}}]}, r"models.json, entry 1, field 'settings': Unknown decoding setting 'beams'"),
    ({"queries": ["ok", ""]}, r"queries.json, entry 2: must not be empty"),
])
def test_validation_errors_name_the_file_the_entry_and_the_field(tmp_path, kwargs, expected):
    _write(tmp_path, **kwargs)
    with pytest.raises(InputError, match=expected) as info:
        P.load_presets(tmp_path)
    assert "\n" not in str(info.value)


def test_invalid_json_names_file_and_line(tmp_path):
    (tmp_path / "personas.json").write_text('{"personas": {"x": {"text": "a",}}}')
    with pytest.raises(InputError, match=r"personas.json is not valid JSON \(line 1"):
        P.load_presets(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        P.load_presets(tmp_path / "nope")
