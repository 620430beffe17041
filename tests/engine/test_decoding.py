"""Persona-judge and direct prompting on a tiny random model: trace invariants, exactness against
the slow reference decoder, determinism, budgets and end-of-sequence."""

import dataclasses
import json

import pytest
from conftest import make_tiny_lm

from pjudge_core import (
    DecodeSettings,
    InputError,
    direct_prompt,
    persona_judge,
    stream_persona_judge,
)
from pjudge_core.engine.methods import METHODS

QUERY, A, B = "Describe a sunset", "Be concise.", "Be imaginative."


def run(lm, **kwargs):
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("max_new_tokens", 60)
    return persona_judge(lm, QUERY, A, B, **kwargs)


def test_trace_obeys_the_acceptance_rule(tiny_lm):
    result = run(tiny_lm, max_new_tokens=120)
    decisions = {s.decision for s in result.steps}
    assert {"accepted", "resampled"} <= decisions  # the tiny model disagrees with itself often
    for s in result.steps:
        if s.decision == "accepted":
            assert s.u <= s.p / s.q + 1e-6 and s.p > 0
        elif s.decision == "resampled":
            assert s.u > s.rejected_p / s.rejected_q - 1e-6
            assert s.p > 0 and s.rejected_token_id is not None
        else:
            assert s.decision == "bonus" and s.u is None and s.q is None


def test_a_bonus_comes_only_after_exactly_lambda_accepts():
    agreeable = make_tiny_lm(init_std=0.2)  # ~75% acceptance: both bonus and resampled blocks occur
    for lam in (1, 2, 4):
        result = run(agreeable, lam=lam, max_new_tokens=150, seed=lam)
        blocks = {}
        for s in result.steps:
            blocks.setdefault(s.block, []).append(s.decision)
        bonus_blocks = 0
        for decisions in list(blocks.values())[:-1]:  # the last block may be cut by the budget
            if decisions[-1] == "bonus":
                bonus_blocks += 1
                assert decisions == ["accepted"] * lam + ["bonus"]
            else:
                assert decisions == ["accepted"] * (len(decisions) - 1) + ["resampled"]
                assert len(decisions) <= lam
        assert bonus_blocks > 0, f"no bonus block with lam={lam}; the test would prove nothing"


def test_roles_alternate_every_block_and_stay_fixed_in_the_base_variant(tiny_lm):
    alternating = run(tiny_lm, max_new_tokens=80)
    for s in alternating.steps:
        assert s.drafter == ("A" if s.block % 2 == 0 else "B")
    assert alternating.stats["blocks"] > 4
    fixed = run(tiny_lm, max_new_tokens=80, alternate=False)
    assert {s.drafter for s in fixed.steps} == {"A"}


def test_text_equals_the_decoded_token_ids_and_the_step_texts(tiny_lm):
    result = run(tiny_lm)
    assert result.token_ids == [s.token_id for s in result.steps]
    assert result.text == tiny_lm.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    assert "".join(s.text for s in result.steps) == result.text


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("alternate", [True, False])
def test_fast_decoder_matches_the_slow_reference_token_for_token(tiny_lm, greedy, alternate):
    kwargs = dict(max_new_tokens=70, lam=3, alternate=alternate, greedy=greedy, seed=11)
    fast = run(tiny_lm, **kwargs)
    slow = METHODS["persona-judge"].reference(tiny_lm, QUERY, [A, B], DecodeSettings(**kwargs))
    assert [(s.token_id, s.decision, s.drafter) for s in fast.steps] == slow


def test_same_seed_same_output_and_different_seed_different_output(tiny_lm):
    assert run(tiny_lm, seed=5).token_ids == run(tiny_lm, seed=5).token_ids
    assert run(tiny_lm, seed=5).token_ids != run(tiny_lm, seed=6).token_ids
    unseeded = run(tiny_lm, seed=None)
    assert run(tiny_lm, seed=unseeded.settings["seed"]).token_ids == unseeded.token_ids


def test_greedy_is_deterministic_without_a_seed(tiny_lm):
    assert run(tiny_lm, greedy=True, seed=None).token_ids == run(tiny_lm, greedy=True, seed=None).token_ids
    assert all(s.u is None for s in run(tiny_lm, greedy=True).steps)


def test_never_more_than_max_new_tokens(tiny_lm):
    for n in (1, 2, 5, 9, 33):
        result = run(tiny_lm, max_new_tokens=n, lam=4)
        assert result.stats["new_tokens"] == len(result.steps) == n
        assert result.stats["stopped_by"] == "max_new_tokens"


def _with_eos(lm, token_id):
    return dataclasses.replace(lm, eos_token_ids=frozenset({token_id}))


def test_stops_at_end_of_sequence(tiny_lm):
    full = run(tiny_lm, max_new_tokens=60)
    eos = full.token_ids[7]
    first = full.token_ids.index(eos)
    stopped = run(_with_eos(tiny_lm, eos), max_new_tokens=60)
    # Randomness is keyed by position, so the run is the same up to and including the first EOS.
    assert stopped.token_ids == full.token_ids[: first + 1]
    assert stopped.stats["stopped_by"] == "eos"
    direct = direct_prompt(tiny_lm, QUERY, [A, B], seed=3, max_new_tokens=60)
    eos = direct.token_ids[5]
    assert direct_prompt(_with_eos(tiny_lm, eos), QUERY, [A, B], seed=3, max_new_tokens=60).token_ids == \
        direct.token_ids[: direct.token_ids.index(eos) + 1]


def test_stats_count_forwards_and_acceptance_per_drafter(tiny_lm):
    result = run(tiny_lm, max_new_tokens=80)
    stats = result.stats
    judged = [s for s in result.steps if s.decision != "bonus"]
    assert stats["acceptance_rate"] == pytest.approx(sum(s.decision == "accepted" for s in judged) / len(judged))
    for drafter in "AB":
        mine = [s for s in judged if s.drafter == drafter]
        assert stats["acceptance_rate_by_drafter"][drafter] == pytest.approx(
            sum(s.decision == "accepted" for s in mine) / len(mine))
    # One judge forward per block plus at most λ drafter forwards per block.
    assert stats["blocks"] < stats["forward_passes"] <= stats["blocks"] * 5
    assert stats["tokens_per_s"] > 0 and stats["seconds"] > 0


def test_result_is_json(tiny_lm):
    data = json.loads(json.dumps(run(tiny_lm).to_dict()))
    assert data["method"] == "persona-judge" and len(data["steps"]) == 60
    step = data["steps"][0]
    for key in ("token_id", "text", "block", "drafter", "judge", "p", "q", "u", "decision",
                "rejected_token_id", "rejected_p", "rejected_q"):
        assert key in step


def test_direct_prompt_with_one_preference_uses_the_role_prompt(tiny_lm):
    pj = run(tiny_lm, max_new_tokens=2)
    assert direct_prompt(tiny_lm, QUERY, [A], max_new_tokens=1).settings["prompt"] == pj.settings["prompts"]["A"]
    assert direct_prompt(tiny_lm, QUERY, [B], max_new_tokens=1).settings["prompt"] == pj.settings["prompts"]["B"]


def test_streaming_yields_the_same_steps_as_the_result(tiny_lm):
    stream = stream_persona_judge(tiny_lm, QUERY, A, B, seed=3, max_new_tokens=30)
    seen = [s.token_id for s in stream]
    assert seen == stream.result.token_ids == run(tiny_lm, max_new_tokens=30).token_ids


def test_closing_a_stream_stops_decoding_and_leaves_the_model_as_it_was(tiny_lm):
    before = run(tiny_lm, max_new_tokens=30).token_ids
    forwards = []
    # The decoder stack runs in every forward (the CPU fast path projects its output itself).
    hook = tiny_lm.model.get_decoder().register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        stream = stream_persona_judge(tiny_lm, QUERY, A, B, seed=3, max_new_tokens=30)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        used = len(forwards)
        with pytest.raises(StopIteration):
            next(stream)  # a closed stream yields nothing more ...
        assert len(forwards) == used  # ... and runs no more forwards
    finally:
        hook.remove()
    assert stream.result is None
    assert 0 < used < 30
    # Nothing of the interrupted run (caches, positions, randomness) leaks into the next one.
    assert run(tiny_lm, max_new_tokens=30).token_ids == before


@pytest.mark.parametrize("kwargs, message", [
    (dict(lam=0), "λ"),
    (dict(lam=1.5), "λ"),
    (dict(max_new_tokens=0), "Max new tokens"),
    (dict(temperature=0.0), "Temperature"),
    (dict(beam_width=2), "Unknown decoding setting"),
])
def test_bad_settings_raise_readable_errors(tiny_lm, kwargs, message):
    with pytest.raises(InputError, match=message):
        run(tiny_lm, **kwargs)


def test_empty_query_or_preference_is_refused(tiny_lm):
    with pytest.raises(InputError, match="query"):
        persona_judge(tiny_lm, " ", A, B)
    with pytest.raises(InputError, match="Preference B"):
        persona_judge(tiny_lm, QUERY, A, "")


def test_prompt_longer_than_the_context_is_refused():
    lm = make_tiny_lm(max_positions=64)
    with pytest.raises(InputError, match="context of 64 tokens"):
        persona_judge(lm, "word " * 80, A, B)
    with pytest.raises(InputError, match="context"):
        direct_prompt(lm, QUERY, [A], max_new_tokens=60)


def test_the_detokenisers_direct_decode_equals_the_tokenizers_and_is_used_only_where_it_can_be():
    import random

    from pjudge_core.bench.tiny import make_tokenizer
    from pjudge_core.engine.trace import _decoder
    tokenizer, rng = make_tokenizer(), random.Random(0)
    decode = _decoder(tokenizer)
    for _ in range(500):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randint(0, 20))]
        assert decode(ids) == tokenizer.decode(ids, skip_special_tokens=True)
    tokenizer.clean_up_tokenization_spaces = True  # transformers would change the text: its decode is kept
    calls = []
    tokenizer.decode = lambda ids, **kwargs: calls.append(ids) or ""
    _decoder(tokenizer)([5, 6])
    assert calls == [[5, 6]]
