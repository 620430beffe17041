"""A method is one module and one registry line: a toy method, registered here and nowhere else,
reaches run specs, `generate`, batches, the lab's choices and panels, the batch check and a
ZeroGPU call's duration estimate."""

from __future__ import annotations

import pytest

from pjudge_core import DecodeSettings, InputError, Request, RunSpec, generate, generate_many
from pjudge_core.bench import batch_check
from pjudge_core.engine.methods import METHODS, Method, Panel, method_named, register, unregister
from pjudge_core.engine.methods.direct import direct_steps
from pjudge_core.engine.prompting import prompt_ids
from pjudge_core.ui import lab
from pjudge_core.ui.access import Access
from pjudge_core.ui.form import read_form
from pjudge_core.ui.zerogpu import GpuTime

QUERY, PREFS = "Describe a sunset.", ["Be concise.", "Be imaginative.", "Be funny."]


def _start(lm, query, prefs, settings, options, uniforms, trace):
    """The last persona's prompt alone, sampled as direct prompting samples."""
    last = list(prefs.values())[-1]
    return [prompt_ids(lm.tokenizer, query, [last])], lambda rows: direct_steps(rows[0], trace, settings, uniforms)


def _check(prefs, settings):
    if not prefs:
        raise InputError("The last persona needs at least one preference.")


TOY = Method(name="last-persona", description="A toy method for the tests: the last persona's prompt alone.",
             start=_start, check=_check, forwards_per_token=lambda settings: 3.0,
             panels=(Panel("last-persona", "Last persona only", "the last persona alone", position=99),),
             examples=("last-persona",))


@pytest.fixture
def toy():
    register(TOY)
    try:
        yield TOY
    finally:
        unregister(TOY.name)


def test_a_registered_method_is_a_run_spec_and_generates(tiny_lm, toy):
    spec = RunSpec.parse("Last-Persona[A,B](lam=2)")
    assert (spec.method, spec.key, spec.label) == ("last-persona", "last-persona[A,B](lam=2)",
                                                   "last-persona (A,B; λ=2)")
    settings = DecodeSettings(seed=3, max_new_tokens=12)
    result = generate(tiny_lm, "last-persona", QUERY, PREFS, settings)
    assert result.method == "last-persona" and result.token_ids == generate(tiny_lm, "direct", QUERY, PREFS[-1:],
                                                                           settings).token_ids
    with pytest.raises(InputError, match="last persona needs at least one"):
        RunSpec.parse("last-persona[]").check(PREFS, settings)


def test_a_registered_method_decodes_in_a_batch_and_in_the_batch_check(tiny_lm, toy):
    settings = DecodeSettings(seed=1, max_new_tokens=10)
    requests = [Request("last-persona", QUERY, PREFS, settings), Request("persona-judge", QUERY, PREFS[:2], settings)]
    together = generate_many(tiny_lm, requests, rows=2)
    assert [r.token_ids for r in together] == [r.token_ids for r in (generate_many(tiny_lm, [q], rows=1)[0]
                                                                     for q in requests)]
    assert "last-persona" in batch_check.checked_specs()
    mixed = batch_check.mixed_requests(len(batch_check.checked_specs()), max_new_tokens=8)
    assert any(RunSpec.parse(r.spec).method == "last-persona" for r in mixed)


def test_a_registered_method_is_offered_by_the_lab_and_decodes_there(tiny_lm, toy):
    assert ("Last persona only", "last-persona") in lab.method_choices(2)
    assert lab.slots()[-1] == "last-persona" and lab.slot_id("last-persona") == "last-persona"
    run = lab.LabRun(tiny_lm, QUERY, {"A": PREFS[0], "B": PREFS[1]}, {"last-persona": lab.slot_spec("last-persona")},
                     DecodeSettings(seed=2, max_new_tokens=8))
    list(run)
    assert run.panels["last-persona"].result.method == "last-persona"


def test_a_registered_method_has_its_own_cost_in_a_zerogpu_calls_duration(toy):
    access = Access()
    gpu = GpuTime(access, zero_gpu=True, token_costs={"m": 0.1})
    fields = dict(persona_a="x", pref_a=PREFS[0], persona_b="y", pref_b=PREFS[1], query=QUERY, lam=4,
                  roles="alternate", greedy=False, temperature=0.9, top_k=20, top_p=0.9, max_new_tokens=64, seed=0)
    toy_run = gpu.run("m", False, read_form(access, {**fields, "methods": ["last-persona"]}))
    direct_run = gpu.run("m", False, read_form(access, {**fields, "methods": ["direct"]}))
    assert toy_run > direct_run  # three forwards a token against one


def test_an_unknown_method_is_an_error_never_a_default():
    with pytest.raises(InputError, match="Unknown method 'last-persona'"):
        method_named("last-persona")
    with pytest.raises(InputError, match="Unknown method 'last-persona' in run spec"):
        RunSpec.parse("last-persona")
    assert "last-persona" not in METHODS and "last-persona" not in lab.slots()
