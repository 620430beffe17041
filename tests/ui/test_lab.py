"""The live lab's logic without a browser: which methods can be ticked, their specs, and several
streams decoding together with their steps interleaved."""

import pytest

from pjudge_core import DecodeSettings, InputError, generate
from pjudge_core.ui import lab

PREFS = {"A": "Be concise.", "B": "Be imaginative."}
QUERY = "Describe a sunset"


def test_method_choices_follow_the_number_of_personas():
    two = [slot for _, slot in lab.method_choices(2)]
    assert two == ["persona-judge", "direct", "persona-judge-base", "direct[A]", "direct[B]", "fusion", "official"]
    four = [slot for _, slot in lab.method_choices(4)]
    assert "direct[D]" in four and "persona-judge-base" not in four and "official" not in four
    assert any("fusion" in label.lower() for label, _ in lab.method_choices(3))
    assert set(two) | set(four) <= set(lab.slots())


def test_every_slot_has_a_panel_id():
    ids = [lab.slot_id(slot) for slot in lab.slots()]
    assert len(set(ids)) == len(ids) and "fusion" in ids and "direct-a" in ids


def test_slot_specs_take_fusions_parameters_and_the_roles_setting():
    assert lab.slot_spec("fusion").key == "fusion"
    assert lab.slot_spec("fusion", alpha=0.5, weights=(2.0, 1.0)).key == "fusion(alpha=0.5,weights=2:1)"
    assert lab.slot_spec("persona-judge", alternate=False).key == "persona-judge-base"
    assert lab.slot_spec("direct[B]").label == "B alone"
    with pytest.raises(InputError, match="Unknown method"):
        lab.slot_spec("beam")


@pytest.mark.parametrize("text, n, expected", [("", 2, None), ("2:1", 2, (2.0, 1.0)), ("1, 2, 3", 3, (1.0, 2.0, 3.0))])
def test_fusion_weights_are_read_from_text(text, n, expected):
    assert lab.parse_weights(text, n) == expected


@pytest.mark.parametrize("text, message", [("a:b", "numbers separated by ':'"), ("1:2:3", "one weight per persona")])
def test_bad_fusion_weights_get_a_sentence(text, message):
    with pytest.raises(InputError, match=message):
        lab.parse_weights(text, 2)


def test_panels_grow_together_and_end_with_the_same_tokens_as_separate_runs(tiny_lm):
    settings = DecodeSettings(max_new_tokens=30, seed=2)
    specs = {slot: lab.slot_spec(slot, alpha=0.5) for slot in ("persona-judge", "direct", "fusion")}
    run = lab.LabRun(tiny_lm, QUERY, PREFS, specs, settings)
    order = list(run)
    assert run.done
    # Every engine step gives direct prompting and fusion a token each and Persona-judge a block
    # after each λ drafts, so every panel's first token comes within the first λ + 1 steps.
    assert all(order.index(slot) < 3 * (settings.lam + 1) for slot in specs)
    assert run.engine.forwards < sum(p.result.stats["forward_passes"] for p in run.panels.values())  # shared
    for slot, spec in specs.items():
        alone = spec.run(tiny_lm, QUERY, PREFS, settings)
        assert run.panels[slot].result.token_ids == alone.token_ids
        assert run.panels[slot].first_token_s is not None


def test_close_stops_every_panel(tiny_lm):
    settings = DecodeSettings(max_new_tokens=60, seed=2)
    run = lab.LabRun(tiny_lm, QUERY, PREFS, {s: lab.slot_spec(s) for s in ("persona-judge", "direct")}, settings)
    for i, _ in zip(range(10), run):
        pass
    run.close()
    counts = {slot: len(p.steps) for slot, p in run.panels.items()}
    assert list(run) == []  # nothing more comes ...
    assert {slot: len(p.steps) for slot, p in run.panels.items()} == counts  # ... and no new tokens
    assert all(p.result is None and p.stopped and p.done for p in run.panels.values())


def test_nothing_decodes_when_a_spec_is_refused(tiny_lm):
    settings = DecodeSettings(max_new_tokens=10)
    with pytest.raises(InputError, match="names persona C"):
        lab.LabRun(tiny_lm, QUERY, PREFS, {"direct": lab.slot_spec("direct"), "direct[C]": lab.slot_spec("direct[C]")},
                   settings)
    with pytest.raises(InputError, match="Tick at least one method"):
        lab.LabRun(tiny_lm, QUERY, PREFS, {}, settings)
    with pytest.raises(InputError, match="query is empty"):
        lab.LabRun(tiny_lm, " ", PREFS, {"direct": lab.slot_spec("direct")}, settings)
    assert generate(tiny_lm, "direct", QUERY, PREFS, settings).token_ids  # the model is untouched


def test_a_run_on_a_shared_engine_says_it_waits_only_while_every_row_is_taken(tiny_lm):
    from pjudge_core.engine.engine import Engine
    engine = Engine(tiny_lm, rows=2)  # two requests decode at once

    def run(slot, seed):
        return lab.LabRun(tiny_lm, QUERY, PREFS, {slot: lab.slot_spec(slot)},
                          DecodeSettings(max_new_tokens=40, seed=seed), engine=engine)

    first = run("persona-judge", 1)
    engine.step()
    engine.step()  # the first run is two steps into its block of λ + 1
    second = run("persona-judge", 2)
    engine.step()
    assert second.panels["persona-judge"].job.state == "waiting"  # for its phase: a row is free ...
    assert second.waiting == 0  # ... so it does not say it waits for a row
    while second.panels["persona-judge"].job.state == "waiting":
        engine.step()
    third = run("direct", 3)
    engine.step()
    assert third.panels["direct"].job.state == "waiting" and third.waiting == 1  # no row free: first in line
    for r in (first, second, third):
        r.close()
