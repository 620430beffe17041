"""What "Did it work?" says first: whether the model follows each persona, from the shipped table."""

import json

from pjudge_core.presets import presets
from pjudge_core.ui import following, render
from pjudge_core.ui.access import Access
from pjudge_core.ui.zerogpu import GpuTime


def test_the_bundled_models_table_covers_every_persona_preset():
    table = following.shipped("bundled")
    assert table is not None and set(table["personas"]) >= set(presets().personas)
    assert following.shipped("HuggingFaceTB/SmolLM2-135M-Instruct") == table
    assert following.shipped("Qwen/Qwen2.5-0.5B-Instruct") is None


def test_known_sentences_come_from_the_table_by_text(tmp_path, monkeypatch):
    table = {"placebo_kl": {"mean": 0.05}, "n": 20, "settings": {"max_new_tokens": 128},
             "personas": {"loud": {"text": "Be loud.", "followed": True, "kl": {"mean": 0.4},
                                   "vs_placebo": {"mean": 0.35, "low": 0.2, "high": 0.5}, "ratio": 8.0},
                          "quiet": {"text": "Be quiet.", "followed": False, "kl": {"mean": 0.06},
                                    "vs_placebo": {"mean": 0.01, "low": -0.02, "high": 0.04}, "ratio": 1.2}}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    monkeypatch.setitem(following.SHIPPED, "some/model", (path, "some/model"))
    sentences = following.known("some/model", {"A": "Be loud.", "B": "Be quiet.", "C": "Be new."})
    assert sentences[0].startswith("A: some/model follows 'loud'")
    assert sentences[1].startswith("B: some/model barely follows 'quiet'")
    assert sentences[2] == "C: this text was not measured for some/model; measure it on this query below."
    assert following.known("other/model", {"A": "Be loud."}) is None


def test_measured_sentences_name_a_preset_by_its_name_and_the_bundled_model_by_its_short_name():
    entry = {"followed": True, "kl": {"mean": 0.3}, "vs_placebo": {"mean": 0.27, "low": 0.2, "high": 0.3}, "ratio": 10}
    poem = presets().personas["poem"].text
    result = {"placebo_kl": {"mean": 0.03}, "personas": {"A": {**entry, "text": poem},
                                                         "B": {**entry, "text": "Write like a " + "very " * 20 + "cat."}}}
    name = following.short_name("bundled", "SmolLM2-135M-Instruct (bundled, offline)")
    assert name == "SmolLM2-135M" and following.short_name("some/model", "some/model") == "some/model"
    a, b = following.measured_sentences(result, name)
    assert a.startswith("A: SmolLM2-135M follows 'poem'")
    assert b.startswith("B: SmolLM2-135M follows 'Write like a very") and "…'" in b  # not a preset: its text's start


def test_the_section_escapes_what_it_shows():
    out = render.follows_html(["A: <b>x</b> follows"], "note <i>")
    assert "&lt;b&gt;" in out and "<b>" not in out and "&lt;i&gt;" in out
    assert "<code>eval sensitivity</code>" in render.follows_html(["A: x"], "run `eval sensitivity` <i>")
    assert "Measure on this query" in render.follows_html(None)


def test_measuring_on_zerogpu_asks_for_its_own_duration():
    gpu = GpuTime(Access(), zero_gpu=True, token_costs={"m": 0.05})
    two, four = gpu.follows("m", False, 2), gpu.follows("m", False, 4)
    assert 10 <= two < four <= gpu.max_s
    assert GpuTime(Access()).follows("m", False, 2) is None


def test_the_bundled_models_default_pair_is_one_it_measurably_follows():
    from pjudge_core.ui.models import first_run

    pair_name, _, _ = first_run("bundled")
    a, b = presets().pairs[pair_name].a, presets().pairs[pair_name].b
    table = following.shipped("bundled")
    assert table["personas"][a]["followed"] and table["personas"][b]["followed"]
    texts = {"A": presets().personas[a].text, "B": presets().personas[b].text}
    assert [s[:len("A: SmolLM2-135M follows")] for s in following.known("bundled", texts)] == [
        "A: SmolLM2-135M follows", "B: SmolLM2-135M follows"]


def test_the_pickers_name_the_presets_the_bundled_model_does_not_follow():
    table = following.shipped("bundled")
    note = following.picker_note("bundled")
    weak = [n for n in presets().personas if not table["personas"][n]["followed"]]
    assert note.startswith(f"SmolLM2-135M measurably follows {len(presets().personas) - len(weak)} of these")
    assert all(name in note for name in weak)
    assert following.picker_note("Qwen/Qwen2.5-0.5B-Instruct") == ""
