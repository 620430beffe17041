"""bfloat16: the logits the decoders decide with come from a float32 head over the model's bfloat16
hidden states, not from bfloat16 logits (rounded to about 0.06-0.125 nats before the softmax). The
statistical exactness tests run in bfloat16 too (`test_exactness.py`). And reproducible runs: a
request whose tokens do not depend on its batch-mates, in any dtype."""

import dataclasses

import torch
from conftest import in_bfloat16

from pjudge_core import DecodeSettings, generate
from pjudge_core.bench.batch_check import check_batched, mixed_requests
from pjudge_core.engine.engine import Engine
from pjudge_core.engine.kv import Feed, KVPool
from pjudge_core.engine.runner import ModelRunner


def test_in_bfloat16_the_logits_come_from_a_float32_head_over_the_hidden_states(tiny_lm):
    lm = in_bfloat16(tiny_lm)
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
    lm = in_bfloat16(tiny_lm)
    for method in ("persona-judge", "direct", "fusion", "official"):
        result = generate(lm, method, "Describe a sunset.", ["Be concise.", "Be imaginative."],
                          DecodeSettings(seed=1, max_new_tokens=12))
        assert len(result.token_ids) >= 1 and all(0 <= s.p <= 1 for s in result.steps)  # (official: p may be 0)


def test_reproducible_requests_decode_their_lone_runs_tokens_in_bfloat16_whatever_their_batch(tiny_lm):
    """In bfloat16 a row's rounding depends on its batch's shape: rows sharing forwards may part from
    their lone runs at a near-tie. Reproducible requests go through forwards of their own, shaped as
    alone, and decode exactly their lone runs' tokens; the fast ones beside them are counted too."""
    lm = in_bfloat16(tiny_lm)
    requests = mixed_requests(18, seed=1, max_new_tokens=24)
    report = check_batched(lm, requests, rows=16)
    assert report["modes"]["reproducible"]["identical"] == 18
    fast = report["modes"]["fast"]["identical"]
    print(f"bfloat16, 18 mixed requests, 16 rows: fast {fast}/18 identical to their lone runs, reproducible 18/18")


def test_a_reproducible_request_shares_no_forward(tiny_lm):
    engine = Engine(tiny_lm, rows=8)
    shared = [engine.submit(r.job(tiny_lm)) for r in mixed_requests(4, seed=2, max_new_tokens=12)]
    mine = engine.submit(dataclasses.replace(mixed_requests(1, seed=3, max_new_tokens=12)[0], settings=DecodeSettings(
        seed=3, max_new_tokens=12, reproducible=True)).job(tiny_lm))
    forward, seen = engine.runner.forward, []

    def recording(feeds):
        seen.append({f.slot for f in feeds})
        return forward(feeds)

    engine.runner.forward = recording
    slots = set()
    while engine.busy:
        slots |= {row.slot for row in mine.rows}
        engine.step()
    assert mine.state == "finished" and all(s.isdisjoint(slots) or s <= slots for s in seen)
    assert all(job.state == "finished" for job in shared)
