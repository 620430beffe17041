"""The model runner: one forward over any rows of the KV pool, and what the model's head projects.

`ModelRunner(model, pool).forward(feeds)` runs one forward over the rows of `feeds` (`kv.Feed`:
a slot, its new tokens, how many of their logits it wants): the ids are aligned on the right and
padded on the left, every row gets its own positions, and the 4-D attention mask lets a real
token see its own row's keys only (padding columns are stored nowhere: `kv.KVPool.update`). It
returns each row's logits and advances the rows' cached lengths.

The head policy: a forward needs the logits of a few positions per row (the last one, or a judge's
λ + 1), but the model's own head with `logits_to_keep` projects the same number for every row,
padding included. Where the logits are the head applied to the last hidden states (`plain_head`:
a linear head, and at most Gemma-2's final soft-capping), the runner takes the hidden states and
projects only the positions some row wants (`project_to_vocabulary`), in float32 whatever the
model's dtype: in bfloat16 the logits would be rounded to about 0.06-0.125 nats before the softmax,
and p, q and every fit with them. A model whose head is not plain runs its own forward, and its
logits are upcast after. The prefix-tree scorer (`evaluation.scoring`) uses the same policy.

`full_logits` is the slow path the reference decoders take: one full forward, no cache.

The model's attention must accept a 4-D mask (transformers' "sdpa" and "eager" do; the pool's
grouped variant too): the mask is boolean for sdpa and additive for eager. Sliding-window layers get
a mask of their own (`attention_mask`); a model with other kinds of layers is refused
(`check_decodable`, at load) rather than decoded wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from .attention import NAME as GROUPED
from .kv import Feed, KVPool

# Architectures whose causal-LM head is `lm_head(hidden)`, then at most the config's final soft-capping.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2", "gemma", "gemma2"}
MASKED_ATTENTION = ("sdpa", "eager", GROUPED)  # implementations that take a prepared 4-D mask


def plain_head(model) -> bool:
    """True when the logits are `get_output_embeddings()(last hidden state)`, soft-capped at most."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return getattr(model.config, "model_type", None) in PLAIN_HEAD_MODELS and isinstance(head, torch.nn.Linear)


def float32_head(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The head's weight and bias in float32: the head's own when it is float32, else a float32 copy
    made once (vocab × hidden × 4 bytes: 2.2 GB for a 152k × 3.6k head; docs/deploying.md)."""
    head = model.get_output_embeddings()
    if head.weight.dtype == torch.float32:
        return head.weight, head.bias
    cached = getattr(head, "_pjudge_float32", None)
    if cached is None:
        cached = (head.weight.detach().float(), None if head.bias is None else head.bias.detach().float())
        head._pjudge_float32 = cached
    return cached


def project_to_vocabulary(model, hidden: torch.Tensor) -> torch.Tensor:
    """Float32 logits (positions, vocab) of the hidden states (positions, hidden) through the model's
    head (and its final soft-capping, if it has one)."""
    weight, bias = float32_head(model)
    logits = torch.nn.functional.linear(hidden.float(), weight, bias)
    cap = getattr(text_config(model), "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


class ModelRunner:
    """Forwards of one model over the rows of one pool (see the module docstring)."""

    def __init__(self, model, pool: KVPool):
        check_decodable(model)
        self.model, self.pool = model, pool
        self.split_projection = plain_head(model)

    def forward(self, feeds: Sequence[Feed]) -> list[torch.Tensor]:
        """One forward over the rows of `feeds`; returns each row's logits (keep, vocab) and advances
        the rows' cached lengths by what they fed."""
        model, pool = self.model, self.pool
        device = model.device
        width = max(len(f.tokens) for f in feeds)
        starts = [pool.lengths[f.slot] for f in feeds]
        ends = [s + len(f.tokens) for s, f in zip(starts, feeds)]
        if max(ends) > pool.capacity:
            pool._grow(capacity=max(2 * pool.capacity, max(ends)))
        for f in feeds:
            if not 1 <= f.keep <= len(f.tokens):
                raise ValueError("asked for logits of positions that are already cached")
        pads = [width - len(f.tokens) for f in feeds]
        ids = [[0] * pad + list(f.tokens) for pad, f in zip(pads, feeds)]
        positions = [[0] * pad + list(range(start, end)) for pad, start, end in zip(pads, starts, ends)]
        ids_t = torch.tensor(ids, dtype=torch.long, device=device)
        positions_t = torch.tensor(positions, dtype=torch.long, device=device)
        real = torch.arange(width, device=device)[None, :] >= torch.tensor(pads, device=device)[:, None]
        slots = [f.slot for f in feeds]
        first = slots[0] if slots == list(range(slots[0], slots[0] + len(slots))) else None
        length = max(ends)
        writes = [(f.slot, pad, start, end) for f, pad, start, end in zip(feeds, pads, starts, ends)]
        pool._plan = (torch.tensor(slots, dtype=torch.long, device=device), writes, length, first)
        mask = attention_mask(positions_t, real, length, model)
        keep = max(f.keep for f in feeds)
        kwargs = dict(input_ids=ids_t, attention_mask=mask, position_ids=positions_t, past_key_values=pool,
                      use_cache=True)
        try:
            with torch.inference_mode():  # cheaper than no_grad (no version counters): docs/benchmarks.md
                if self.split_projection:
                    hidden = model.get_decoder()(**kwargs).last_hidden_state
                    wanted = torch.cat([hidden[i, width - f.keep:] for i, f in enumerate(feeds)])
                    flat = project_to_vocabulary(model, wanted)
                else:
                    logits = model(**kwargs, logits_to_keep=keep).logits
                    flat = torch.cat([logits[i, keep - f.keep:] for i, f in enumerate(feeds)]).float()
        finally:
            pool._plan = pool._rows_index = None
        for f, end in zip(feeds, ends):
            pool.lengths[f.slot] = end
        return list(torch.split(flat, [f.keep for f in feeds]))


LAYER_TYPES = ("full_attention", "sliding_attention")  # the attention layers the engine masks exactly


def text_config(model):
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def check_decodable(model) -> None:
    """An `InputError` for a model the engine cannot decode exactly: attention that takes no prepared
    4-D mask, or layers other than full or sliding-window attention (chunked attention, linear or
    recurrent layers), which one mask per layer type cannot describe."""
    implementation = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
    if implementation not in MASKED_ATTENTION:
        raise InputError(f"This model uses {implementation} attention; the engine needs sdpa or eager attention "
                         "(load it with attn_implementation='sdpa').")
    other = sorted(set(getattr(text_config(model), "layer_types", None) or ()) - set(LAYER_TYPES))
    if other:
        raise InputError(f"This model has {', '.join(other)} layers; the engine decodes only full and sliding-window "
                         "attention exactly, so it refuses the model rather than decode it wrongly.")


def attention_mask(positions: torch.Tensor, real: torch.Tensor, length: int, model) -> torch.Tensor | dict:
    """(rows, 1, width, length): a real token at position t sees its row's keys 0..t (within its sliding
    window, in a sliding-window layer); a padding column sees key 0 only (its output is never read, but
    a row of -inf would give NaN). A model with sliding-window layers beside full ones takes one mask per
    layer type ({"full_attention": ..., "sliding_attention": ...}); a model whose every layer slides
    (Mistral: a window, no layer types) takes the sliding one; any other the full one."""
    config = text_config(model)
    keys = torch.arange(length, device=positions.device)
    causal = (keys[None, None, :] <= positions[:, :, None]) & real[:, :, None]
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    sliding = None
    if window is not None and (types is None or "sliding_attention" in types):
        sliding = causal & (keys[None, None, :] > positions[:, :, None] - window)
    if types is not None and "sliding_attention" in types:
        return {"full_attention": _finished(causal, real, model), "sliding_attention": _finished(sliding, real, model)}
    return _finished(causal if sliding is None else sliding, real, model)


def _finished(visible: torch.Tensor, real: torch.Tensor, model) -> torch.Tensor:
    """The mask as the model's attention takes it: boolean (sdpa) or additive (eager), with a head axis."""
    visible = visible.clone()
    visible[:, :, 0] |= ~real
    visible = visible[:, None]
    implementation = getattr(model.config, "_attn_implementation", "sdpa") or "sdpa"
    if implementation == "eager":
        dtype = model.dtype if model.dtype.is_floating_point else torch.float32
        return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(
            ~visible, torch.finfo(dtype).min)
    return visible


def full_logits(model, prompt: list[int], tokens: list[int], count: int) -> torch.Tensor:
    """Raw logits at the last `count` positions of prompt + tokens (one full forward, no cache)."""
    ids = torch.tensor([prompt + tokens], dtype=torch.long, device=model.device)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits[0, -count:, :]
