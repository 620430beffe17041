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
and p, q and every fit with them. A model whose layers `packing` packed projects through the head's
packed copy. A model whose head is not plain runs its own forward, and its
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
from .packing import packed_head, packed_linear

# Architectures whose causal-LM head is `lm_head(hidden)`, then at most the config's final soft-capping.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2", "gemma", "gemma2"}
MASKED_ATTENTION = ("sdpa", "eager", GROUPED)  # implementations that take a prepared 4-D mask


def plain_head(model) -> bool:
    """True when the logits are `get_output_embeddings()(last hidden state)`, soft-capped at most."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return getattr(model.config, "model_type", None) in PLAIN_HEAD_MODELS and isinstance(head, torch.nn.Linear)


def float32_head(model) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    """The head's weight and bias in float32 (the head's own when it is float32, else a float32 copy:
    vocab × hidden × 4 bytes, 2.2 GB for a 152k × 3.6k head; docs/deploying.md) and the config's final
    soft-capping, read once per model."""
    head = model.get_output_embeddings()
    cached = getattr(head, "_pjudge_float32", None)
    if cached is None or cached[0] is not head.weight and head.weight.dtype == torch.float32:
        cap = getattr(text_config(model), "final_logit_softcapping", None)
        if head.weight.dtype == torch.float32:
            cached = (head.weight, head.bias, cap)
        else:
            cached = (head.weight.detach().float(), None if head.bias is None else head.bias.detach().float(), cap)
        head._pjudge_float32 = cached
    return cached


def project_to_vocabulary(model, hidden: torch.Tensor) -> torch.Tensor:
    """Float32 logits (positions, vocab) of the hidden states (positions, hidden) through the model's
    head (and its final soft-capping, if it has one)."""
    weight, bias, cap = float32_head(model)
    packed = packed_head(model)
    logits = torch.nn.functional.linear(hidden.float(), weight, bias) if packed is None else \
        packed_linear(hidden.float(), packed, bias)
    return torch.tanh(logits / cap) * cap if cap else logits


class ModelRunner:
    """Forwards of one model over the rows of one pool (see the module docstring)."""

    def __init__(self, model, pool: KVPool):
        check_decodable(model)
        self.model, self.pool = model, pool
        self.split_projection = plain_head(model)
        self.masking = Masking(model)

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
        real = [[0] * pad + [1] * (width - pad) for pad in pads]
        ids_t, positions_t, real = torch.tensor([ids, positions, real], dtype=torch.long, device=device)  # one transfer
        real = real.bool()
        slots = [f.slot for f in feeds]
        # Slots evenly spaced (consecutive, or every other one: a step's drafting rows) are read as a view.
        stride = slots[1] - slots[0] if len(slots) > 1 else 1
        evenly = stride > 0 and slots == list(range(slots[0], slots[0] + stride * len(slots), stride))
        first = (slots[0], stride) if evenly else None
        length = max(ends)
        writes = [(f.slot, pad, start, end) for f, pad, start, end in zip(feeds, pads, starts, ends)]
        pool._plan = (torch.tensor(slots, dtype=torch.long, device=device), writes, length, first)
        mask = self.masking.mask(positions_t, real, length)
        keep = max(f.keep for f in feeds)
        kwargs = dict(input_ids=ids_t, attention_mask=mask, position_ids=positions_t, past_key_values=pool,
                      use_cache=True)
        # The wanted positions of every row, as one index: (row, column from the right end).
        wanted = torch.tensor([[i for i, f in enumerate(feeds) for _ in range(f.keep)],
                               [c for f in feeds for c in range(-f.keep, 0)]], device=device)
        try:
            with torch.inference_mode():  # cheaper than no_grad (no version counters): docs/benchmarks.md
                if self.split_projection:
                    hidden = model.get_decoder()(**kwargs).last_hidden_state
                    flat = project_to_vocabulary(model, hidden[wanted[0], wanted[1]])
                else:
                    logits = model(**kwargs, logits_to_keep=keep).logits
                    flat = logits[wanted[0], wanted[1]].float()
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


class Masking:
    """What a model's attention mask depends on, read from its config once (transformers' config
    attribute lookups cost microseconds each, at every forward): the attention implementation, the
    sliding window and which layers use it."""

    def __init__(self, model):
        config = text_config(model)
        self.eager = (getattr(model.config, "_attn_implementation", "sdpa") or "sdpa") == "eager"
        self.dtype = model.dtype if model.dtype.is_floating_point else torch.float32
        self.window = getattr(config, "sliding_window", None)
        types = getattr(config, "layer_types", None)
        self.per_layer_type = types is not None and "sliding_attention" in types  # a mask for each kind of layer
        self.slides = self.window is not None and (types is None or self.per_layer_type)

    def mask(self, positions: torch.Tensor, real: torch.Tensor, length: int) -> torch.Tensor | dict:
        """(rows, 1, width, length): a real token at position t sees its row's keys 0..t (within its sliding
        window, in a sliding-window layer); a padding column sees key 0 only (its output is never read, but
        a row of -inf would give NaN). A model with sliding-window layers beside full ones takes one mask per
        layer type ({"full_attention": ..., "sliding_attention": ...}); a model whose every layer slides
        (Mistral: a window, no layer types) takes the sliding one; any other the full one."""
        keys = torch.arange(length, device=positions.device)
        causal = (keys[None, None, :] <= positions[:, :, None]) & real[:, :, None]
        sliding = causal & (keys[None, None, :] > positions[:, :, None] - self.window) if self.slides else None
        if self.per_layer_type:
            return {"full_attention": self._finished(causal, real), "sliding_attention": self._finished(sliding, real)}
        return self._finished(causal if sliding is None else sliding, real)

    def _finished(self, visible: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The mask as the model's attention takes it: boolean (sdpa) or additive (eager), with a head axis."""
        visible = visible.clone()
        visible[:, :, 0] |= ~real
        visible = visible[:, None]
        if self.eager:
            return torch.zeros(visible.shape, dtype=self.dtype, device=visible.device).masked_fill(
                ~visible, torch.finfo(self.dtype).min)
        return visible


def full_logits(model, prompt: list[int], tokens: list[int], count: int) -> torch.Tensor:
    """Raw logits at the last `count` positions of prompt + tokens (one full forward, no cache)."""
    ids = torch.tensor([prompt + tokens], dtype=torch.long, device=model.device)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits[0, -count:, :]
