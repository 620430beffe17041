"""bfloat16: the logits the decoders decide with come from a float32 head over the model's bfloat16
hidden states, not from bfloat16 logits (rounded to about 0.06-0.125 nats before the softmax). The
statistical exactness tests run in bfloat16 too (`test_exactness.py`)."""

import copy

import torch

from pjudge_core import DecodeSettings, LoadedModel, generate
from pjudge_core.engine.kv import Feed, KVPool
from pjudge_core.engine.runner import ModelRunner


def bfloat16(lm) -> LoadedModel:
    return LoadedModel(model=copy.deepcopy(lm.model).to(torch.bfloat16), tokenizer=lm.tokenizer, name=lm.name,
                       dtype="bfloat16")


def test_in_bfloat16_the_logits_come_from_a_float32_head_over_the_hidden_states(tiny_lm):
    lm = bfloat16(tiny_lm)
    pool = KVPool(lm.model)
    hidden = []
    hook = lm.model.get_decoder().register_forward_hook(lambda m, a, out: hidden.append(out.last_hidden_state))
    try:
        logits = ModelRunner(lm.model, pool).forward([Feed(pool.allocate(), list(range(5, 25)), keep=3)])[0]
    finally:
        hook.remove()
    assert logits.dtype == torch.float32 and hidden[0].dtype == torch.bfloat16
    with torch.no_grad():
        head = lm.model.get_output_embeddings().weight
        expected = hidden[0][0, -3:].float() @ head.float().T
        rounded = (hidden[0][0, -3:] @ head.T).float()  # what the model's own head gives in bfloat16
    assert torch.allclose(logits, expected, rtol=0, atol=1e-5)
    assert (logits - rounded).abs().max() > 100 * (logits - expected).abs().max()  # more precise than bf16


def test_a_bfloat16_model_decodes_every_method(tiny_lm):
    lm = bfloat16(tiny_lm)
    for method in ("persona-judge", "direct", "fusion", "official"):
        result = generate(lm, method, "Describe a sunset.", ["Be concise.", "Be imaginative."],
                          DecodeSettings(seed=1, max_new_tokens=12))
        assert len(result.token_ids) >= 1 and all(0 <= s.p <= 1 for s in result.steps)  # (official: p may be 0)
