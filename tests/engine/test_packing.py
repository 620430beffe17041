"""Linear layers in oneDNN's weight layout (engine/packing.py): the same products to float32 rounding,
the same runs together as alone, and a model left as it was wherever packing cannot be trusted."""

from __future__ import annotations

import pytest
import torch
from conftest import in_packed, moved

from pjudge_core import DecodeSettings, generate, generate_many, prompt_ids
from pjudge_core.bench.batch_check import check_batched, mixed_requests
from pjudge_core.engine import packing
from pjudge_core.engine.packing import PackedLinear, pack_linear_layers, packed_head
from pjudge_core.engine.runner import project_to_vocabulary

pytestmark = pytest.mark.skipif(not packing.packing_available(), reason="this PyTorch has no oneDNN")


@pytest.fixture(scope="module")
def packed_lm(tiny_lm):
    return in_packed(tiny_lm)


def decoder_linears(model) -> list[torch.nn.Module]:
    return [m for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear | PackedLinear)]


@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_product_equals_the_dense_one_to_float32_rounding_for_any_leading_dimensions(bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=bias)
    packed = PackedLinear(linear)
    for x in (torch.randn(1, 48), torch.randn(7, 48), torch.randn(3, 5, 48), torch.randn(48, 6).t()):
        assert torch.allclose(packed(x), linear(x), atol=1e-5), x.shape
    assert packed(torch.randn(0, 48)).shape == (0, 80)


def test_every_decoder_linear_is_packed_the_head_stays_and_the_logits_agree(tiny_lm, packed_lm):
    layers = decoder_linears(packed_lm.model)
    assert len(layers) == 14 and all(type(m) is PackedLinear for m in layers)  # 2 layers × q, k, v, o, gate, up, down
    assert type(packed_lm.model.lm_head) is torch.nn.Linear and packed_head(packed_lm.model) is not None
    assert not any(hasattr(m, "weight") for m in layers)  # the dense weights are gone: memory is not doubled
    ids = torch.tensor([prompt_ids(tiny_lm.tokenizer, "Describe a sunset", ["Be concise."])])
    with torch.no_grad():
        dense = project_to_vocabulary(tiny_lm.model, tiny_lm.model.get_decoder()(input_ids=ids).last_hidden_state[0])
        packed = project_to_vocabulary(packed_lm.model, packed_lm.model.get_decoder()(input_ids=ids).last_hidden_state[0])
    assert packed_head(tiny_lm.model) is None
    assert torch.allclose(packed, dense, atol=1e-4)  # equal up to another library's rounding


def test_rows_decoded_together_on_a_packed_model_equal_their_lone_runs(packed_lm):
    report = check_batched(packed_lm, mixed_requests(24, seed=4, max_new_tokens=24), rows=16, modes=("fast",))
    assert report["modes"]["fast"]["identical"] == 24, report["modes"]["fast"]["differing"]


def test_a_packed_model_decodes_the_tokens_of_the_dense_one_but_at_near_ties(tiny_lm, packed_lm):
    settings = DecodeSettings(seed=3, max_new_tokens=48)
    runs = [generate(lm, "persona-judge", "Describe a sunset", ["Be concise.", "Be imaginative."], settings,
                     ignore_eos=True) for lm in (tiny_lm, packed_lm)]
    dense, packed = (r.steps for r in runs)
    agree = 0
    for a, b in zip(dense, packed):
        if a.token_id != b.token_id:
            break  # after a parting the two runs condition on different text
        assert a.p == pytest.approx(b.p, abs=1e-4)
        agree += 1
    assert agree >= 24


@pytest.mark.parametrize("why", ["no oneDNN", "disagrees", "bfloat16"])
def test_a_model_packing_cannot_be_trusted_on_is_left_as_it_was(tiny_lm, monkeypatch, why):
    lm = moved(tiny_lm, "cpu", torch.bfloat16 if why == "bfloat16" else torch.float32)  # a copy, not yet packed
    if why == "no oneDNN":
        monkeypatch.setattr(packing, "packing_available", lambda: False)
    if why == "disagrees":
        monkeypatch.setattr(packing, "agrees", lambda linear: False)
    assert pack_linear_layers(lm.model) == 0
    assert all(type(m) is torch.nn.Linear for m in decoder_linears(lm.model))
    assert packed_head(lm.model) is None
    result = generate_many(lm, [mixed_requests(1, max_new_tokens=4)[0]])[0]
    assert len(result.token_ids) >= 1


def test_load_model_packs_a_float32_model_on_the_cpu(tiny_folder):
    from pjudge_core import load_model
    lm = load_model(tiny_folder)
    assert all(type(m) is PackedLinear for m in decoder_linears(lm.model))
    assert load_model(tiny_folder, dtype="bfloat16").model.model.layers[0].mlp.up_proj.__class__ is torch.nn.Linear
