"""Grouped-query attention on CPU without copying the keys: transformers' sdpa, minus one copy.

Most chat models share each key/value head among several query heads (SmolLM2: 3 kv heads for 9
query heads). With an attention mask and more than one query position — every batched forward
here: a judge's λ + 1 positions, a prompt, rows of different lengths — transformers' sdpa
attention first repeats the keys and values to one copy per query head (`repeat_kv`), a copy of
every row's whole cache in every layer. PyTorch's CPU kernel takes the grouped keys directly
(``enable_gqa=True``): a tenth of the time per layer for a batched forward (docs/benchmarks.md),
with bit-identical outputs (tests check it). On GPUs transformers keeps
its own choice (there a masked ``enable_gqa`` can fall back to the slow kernel).

`use_grouped_attention(model)` registers this as the attention implementation "sdpa_grouped"
(with sdpa's boolean masks) and switches a CPU model that uses "sdpa" to it; anything else is left
as it is. It changes no output.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "sdpa_grouped"


def grouped_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                           **kwargs):
    groups = getattr(module, "num_key_value_groups", 1)
    if (groups > 1 and attention_mask is not None and attention_mask.dtype == torch.bool and query.shape[2] > 1
            and query.device.type == "cpu" and kwargs.get("position_bias") is None and kwargs.get("softcap") is None):
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                               dropout_p=dropout, scale=scaling, enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def use_grouped_attention(model) -> None:
    """Switch a CPU model from "sdpa" to "sdpa_grouped" (same outputs, see the module docstring)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return
    if next(model.parameters()).device.type != "cpu":
        return
    AttentionInterface.register(NAME, grouped_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
