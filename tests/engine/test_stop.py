"""Stop strings: the answer ends before the first one completed, for every method, and a string
completed inside a Persona-judge block drops that block's later drafts (the stats say which)."""

import pytest

from pjudge_core import DecodeSettings, InputError, generate
from pjudge_core.engine.trace import Holdback

QUERY, PREFS = "Tell me a story", ["be brief", "be vivid"]
METHODS = ["persona-judge", "direct", "fusion"]


def _first_unique_step(steps, accept) -> int:
    """A step (past the first few) whose text is non-empty and occurs first at that step."""
    text = "".join(s.text for s in steps)
    at = 0
    for j, step in enumerate(steps):
        if j >= 3 and step.text.strip() and text.find(step.text) == at and accept(j):
            return j
        at += len(step.text)
    raise AssertionError("no usable step")


@pytest.mark.parametrize("method", METHODS)
def test_the_answer_ends_before_the_stop_string_and_keeps_the_tokens_before_it(tiny_lm, method):
    settings = DecodeSettings(seed=3, max_new_tokens=40)
    full = generate(tiny_lm, method, QUERY, PREFS, settings)
    j = _first_unique_step(full.steps, lambda j: True)
    before = "".join(s.text for s in full.steps[:j])
    stopped = generate(tiny_lm, method, QUERY, PREFS, settings.replace(stop=("never there", full.steps[j].text)))
    assert stopped.token_ids == full.token_ids[:j + 1]  # up to the token that completed it
    assert stopped.text == before and full.steps[j].text not in stopped.text
    assert stopped.stats["stopped_by"] == "stop"
    assert stopped.stats["stop"]["string"] == full.steps[j].text
    assert full.stats["stopped_by"] != "stop" and "stop" not in full.stats


def test_a_stop_string_spanning_two_tokens_cuts_inside_the_earlier_one(tiny_lm):
    settings = DecodeSettings(seed=3, max_new_tokens=40)
    full = generate(tiny_lm, "direct", QUERY, PREFS, settings)
    j = _first_unique_step(full.steps, lambda j: bool(full.steps[j - 1].text))
    string = full.steps[j - 1].text[-1] + full.steps[j].text[0]
    text = "".join(s.text for s in full.steps)
    stopped = generate(tiny_lm, "direct", QUERY, PREFS, settings.replace(stop=(string,)))
    assert stopped.text == text[:text.find(string)]
    assert stopped.token_ids == full.token_ids[:len(stopped.token_ids)]
    assert len(stopped.token_ids) <= j + 1


def test_a_stop_string_completed_inside_a_block_drops_the_blocks_later_drafts(tiny_lm):
    for seed in range(20):  # a seed whose run has an accepted draft followed by another in its block
        settings = DecodeSettings(seed=seed, max_new_tokens=48, lam=4)
        full = generate(tiny_lm, "persona-judge", QUERY, PREFS, settings)
        steps = full.steps

        def mid_block(j):
            return (steps[j].decision == "accepted" and j + 1 < len(steps)
                    and steps[j + 1].block == steps[j].block and steps[j + 1].decision == "accepted")
        try:
            j = _first_unique_step(steps, mid_block)
        except AssertionError:
            continue
        stopped = generate(tiny_lm, "persona-judge", QUERY, PREFS, settings.replace(stop=(steps[j].text,)))
        later = [s.token_id for s in steps[j + 1:] if s.block == steps[j].block and s.decision == "accepted"]
        dropped = stopped.stats["stop"]["dropped_token_ids"]
        assert stopped.token_ids == full.token_ids[:j + 1]
        assert dropped[:len(later)] == later  # the judge had accepted them; they are not part of the answer
        assert stopped.steps[-1].block == steps[j].block
        return
    pytest.fail("no seed gave a block with two accepted drafts")


def test_stop_strings_are_read_from_loose_input_and_checked():
    assert DecodeSettings.from_inputs(stop="\n\n").stop == ("\n\n",)  # white space is a stop string
    assert DecodeSettings.from_inputs(stop=["a", "b"]).stop == ("a", "b")
    assert DecodeSettings.from_inputs(stop="").stop == ()
    assert DecodeSettings(stop=["x"]).stop == ("x",)  # a JSON list becomes the field's tuple
    for bad in (("",), (3,), "abc"):
        with pytest.raises(InputError, match="Stop strings must be a list of non-empty texts"):
            DecodeSettings(stop=bad)


def test_the_holdback_never_sends_a_stop_string_or_a_start_of_one():
    held = Holdback(("STOP",))
    assert held.push("Hello S") == "Hello "  # "S" may begin STOP
    assert held.push("T") == ""
    assert held.push("ay") == "STay"  # it did not
    assert held.push(" then ST") == " then "
    assert held.push("OP and more") == ""
    assert held.finish("Hello STay then ") == ""  # the answer ends before the stop string
    plain = Holdback(())
    assert plain.push("abc") == "abc" and plain.finish("abcdef") == "def"
