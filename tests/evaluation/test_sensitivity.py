"""Does a model follow a persona at all: KL against a placebo, on tiny models built to ignore every
persona or to follow exactly one."""

import math

import pytest
import torch

from pjudge_core import DecodeSettings, InputError, prompt_ids
from pjudge_core.bench.tiny import make_persona_blind_lm, make_persona_following_lm
from pjudge_core.cli import main
from pjudge_core.engine.runner import full_logits
from pjudge_core.evaluation.scoring.prefix_tree import prefix_tree_distributions
from pjudge_core.evaluation.self_judge.sensitivity import PLACEBO, kl_per_token, sensitivity, verdict

QUERIES = ["Describe a sunset over the sea.", "Explain what rain is.", "Tell me a story about a fox.",
           "Why is the sky blue?", "Give me advice on sleep."]
LOUD = "QQQQ ZZZZ QQQQ ZZZZ XXXX JJJJ."  # tokens no other text here holds
BRIEF = "Be concise and brief in every reply you give."
SETTINGS = DecodeSettings(max_new_tokens=16)


def test_kl_per_token_is_the_textbook_sum():
    p, q = torch.tensor([[0.7, 0.2, 0.1]]), torch.tensor([[0.5, 0.25, 0.25]])
    expected = sum(a * math.log(a / b) for a, b in zip(p[0].tolist(), q[0].tolist()))
    assert kl_per_token(p.log(), q.log()).item() == pytest.approx(expected, rel=1e-6)
    assert kl_per_token(p.log(), p.log()).item() == pytest.approx(0.0, abs=1e-7)


def test_full_distributions_from_the_prefix_tree_equal_a_plain_forward(tiny_lm):
    answer = [20, 31, 42, 53, 64]
    items = [(prompt_ids(tiny_lm.tokenizer, q, [p]), answer) for q in QUERIES[:2] for p in ("", BRIEF)]
    for (prompt, response), dist in zip(items, prefix_tree_distributions(tiny_lm, items)):
        # the positions before each response token: the prompt's last and the response's but its last
        expected = torch.log_softmax(full_logits(tiny_lm.model, prompt, response[:-1], len(response)).float(), -1)
        assert dist.shape == (len(response), tiny_lm.model.config.vocab_size)
        assert torch.allclose(dist, expected, atol=1e-4)


def test_a_model_built_to_ignore_personas_follows_none_of_them():
    lm = make_persona_blind_lm()
    result = sensitivity(lm, QUERIES, {"loud": LOUD, "brief": BRIEF}, settings=SETTINGS, seeds=(0, 1))
    assert result["n"] == 10 and result["placebo_kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
    for name, entry in result["personas"].items():
        assert not entry["followed"], name
        assert entry["kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
        assert verdict(name, entry, lm.name, result["placebo_kl"]["mean"]).startswith(f"tiny-blind barely follows '{name}'")


def test_a_model_built_to_follow_one_persona_follows_it_and_not_another():
    lm = make_persona_following_lm(LOUD, [PLACEBO, BRIEF, *QUERIES])
    result = sensitivity(lm, QUERIES, {"loud": LOUD, "brief": BRIEF}, settings=SETTINGS, seeds=(0, 1))
    loud, brief = result["personas"]["loud"], result["personas"]["brief"]
    assert loud["followed"] and loud["vs_placebo"]["low"] > 0.5
    assert not brief["followed"]
    assert verdict("loud", loud, lm.name, result["placebo_kl"]["mean"]).startswith("tiny-following follows 'loud'")


def test_meter_shifts_are_paired_against_no_preference_and_the_placebo(tiny_lm):
    result = sensitivity(tiny_lm, QUERIES[:3], {"brief": BRIEF}, settings=SETTINGS, meters=True)
    shifts = result["personas"]["brief"]["meters"]
    assert set(shifts) == {"flesch_kincaid_grade", "words", "vader_compound", "words_per_line"}
    for meter in shifts.values():
        assert {"vs_none", "vs_placebo"} <= set(meter) and meter["vs_none"]["n"] <= 3


def test_the_command_prints_each_persona_and_refuses_none(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text('[{"id": "1", "prompt": "Why is the sky blue?"}, {"id": "2", "prompt": "Explain rain."}]')
    assert main(["eval", "sensitivity", "--model", tiny_folder, "--prompts", str(prompts), "--persona", "concise",
                 "--pref", BRIEF, "--max-new-tokens", "8", "--out", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "2 answers with no preference" in out and "concise" in out and "beyond the placebo" in out
    assert (tmp_path / "s.json").exists()
    assert main(["eval", "sensitivity", "--model", tiny_folder, "--prompts", str(prompts)]) == 2
    assert "Name the personas" in capsys.readouterr().err
    with pytest.raises(InputError):
        sensitivity(make_persona_blind_lm(), ["  "], {"brief": BRIEF}, settings=SETTINGS)
