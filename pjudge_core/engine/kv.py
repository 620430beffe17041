"""The KV cache of every sequence the engine decodes, as the rows of one pool.

A *row* is one prompt and the tokens after it (a persona's prompt in Persona-judge, the prompt of
direct prompting, one prompt of fusion). Its keys and values live in a slot of `KVPool`: per layer
one key and one value buffer shaped (slots, kv_heads, capacity, head_dim), and one length per slot.

A forward over any set of rows (`runner.ModelRunner`) has each row feed the tokens it has not
cached yet (a prompt, a drafted block, one token) and ask for the logits of its last `keep`
positions (a `Feed`). Feeds are aligned on the right and padded on the left; a row's real tokens
are stored at that row's own length and get that row's own positions, so nothing in a row ever
sees another row, a padding token or a hole (padding columns are stored nowhere and seen by no
real token). Rolling a row back after a rejection is lowering its length
(vLLM's pointer move): the rejected keys stay in the buffer until they are overwritten. So a row
decoded among others sees exactly what it sees alone; only float rounding depends on the batch.

Why one pool and not a `DynamicCache` per row: a batched forward needs the rows' keys side by
side. When the rows of a forward occupy evenly spaced slots (consecutive ones, or every other one as a
step's drafting rows do), attention reads a view of the buffers;
otherwise their slots are gathered (a copy of the keys those rows attend over, cheap next to the
forward). Buffers grow by doubling, in slots and in length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import Cache

from .attention import use_grouped_attention
from .memory import kv_bytes_per_token


class KVPool(Cache):
    """Keys and values of every row, one slot per row (see the module docstring).

    A transformers `Cache`: the model calls `update` once per layer during a forward that the
    runner has prepared with `_plan`. Slots are handed out by `allocate` and given back by
    `release`; `lengths[slot]` is how many tokens of that row are cached.
    """

    def __init__(self, model, slots: int = 4, capacity: int = 256, budget: int | None = None):
        super().__init__(layers=[])
        use_grouped_attention(model)  # batched forwards are masked: no copy of the keys per query head
        self.model = model
        self.slots = slots
        self.capacity = capacity
        self.initial = (slots, capacity)  # what an idle pool shrinks back to
        self.budget = budget  # bytes the buffers may take (None: no limit); `memory.default_budget`
        self.token_bytes = kv_bytes_per_token(model)  # per slot and token; measured once the buffers exist
        self.keys: list[torch.Tensor] = []  # per layer (slots, kv_heads, capacity, head_dim), made at first use
        self.values: list[torch.Tensor] = []
        self.lengths = [0] * slots
        self.free = list(range(slots))
        self._plan = None  # (slot index tensor, [(slot, pad, start, end)] per row, attended length,
        #                   (first slot, stride) when the slots are evenly spaced, else None)
        self._rows_index = None  # (source, target) flat indices of the forward being run, made at its first layer

    # ------------------------------------------------------------------ slots and memory
    def allocate(self) -> int:
        if not self.free:
            self._grow(slots=self._doubled(self.slots, self.slots + 1, self.capacity))
        slot = min(self.free)  # low slots first: the rows of a forward tend to be consecutive
        self.free.remove(slot)
        self.lengths[slot] = 0
        return slot

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0
        self.free.append(slot)
        if not self.used:  # idle: give the memory back (the next forward makes buffers of the initial size)
            self.keys, self.values = [], []
            self.slots, self.capacity = self.initial
            self.lengths, self.free = [0] * self.slots, list(range(self.slots))

    @property
    def used(self) -> int:
        return self.slots - len(self.free)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def size(self, slots: int, capacity: int) -> int:
        """Bytes of buffers of `slots` rows of `capacity` tokens."""
        return slots * capacity * self.token_bytes

    def fits(self, rows: int, tokens: int) -> bool:
        """Whether `rows` more rows of up to `tokens` tokens fit the budget beside those in use."""
        slots = max(self.slots, self.used + rows)
        return self.budget is None or self.size(slots, max(self.capacity, tokens)) <= self.budget

    def ever_fits(self, rows: int, tokens: int) -> bool:
        """Whether `rows` rows of up to `tokens` tokens fit the budget at all (alone in the pool)."""
        return self.budget is None or self.size(max(rows, self.initial[0]), max(tokens, self.initial[1])) \
            <= self.budget

    def reserve(self, rows: int, tokens: int) -> None:
        """Grow now so that `rows` more rows of up to `tokens` tokens fit (doubling where the budget
        allows, to grow seldom); the pool is as it was if that fails."""
        needed = max(self.slots, self.used + rows)
        capacity = self.capacity if tokens <= self.capacity else self._doubled(self.capacity, tokens, needed)
        slots = self.slots if needed <= self.slots else self._doubled(self.slots, needed, capacity)
        if (slots, capacity) != (self.slots, self.capacity):
            self._grow(slots=slots, capacity=capacity)

    def _doubled(self, current: int, needed: int, other: int) -> int:
        """`current` doubled until it reaches `needed`, but not beyond what the budget allows beside
        `other` (the other dimension), and never below `needed`."""
        grown = current
        while grown < needed:
            grown *= 2
        if self.budget is not None:
            limit = self.budget // max(1, other * self.token_bytes)
            grown = max(needed, min(grown, limit))
        return grown

    def _grow(self, slots: int | None = None, capacity: int | None = None) -> None:
        """Bigger buffers (the old contents copied in): more slots, or a longer capacity. Every new
        buffer is made before any replaces an old one, so a failure (out of memory) changes nothing."""
        slots, capacity = max(slots or 0, self.slots), max(capacity or 0, self.capacity)
        grown = []
        for buffers in (self.keys, self.values):
            layers = []
            for old in buffers:
                new = old.new_zeros((slots, old.shape[1], capacity, old.shape[3]))
                new[:old.shape[0], :, :old.shape[2]] = old
                layers.append(new)
            grown.append(layers)
        self.keys, self.values = grown
        self.free += list(range(self.slots, slots))
        self.lengths += [0] * (slots - self.slots)
        self.slots, self.capacity = slots, capacity

    # ------------------------------------------------------------------ what the model calls
    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        slots, writes, length, first = self._plan
        if not self.keys:  # the first forward: every layer's buffers at once, of the model's kv shape and dtype
            shape = (self.slots, key_states.shape[1], self.capacity, key_states.shape[3])
            layers = self.model.config.get_text_config().num_hidden_layers
            keys = [key_states.new_zeros(shape) for _ in range(layers)]
            values = [value_states.new_zeros(shape) for _ in range(layers)]
            self.keys, self.values = keys, values
            self.token_bytes = 2 * sum(k.shape[1] * k.shape[3] * k.element_size() for k in keys)
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # Only real tokens are stored (at the row's length); padding columns are seen by no real token.
        # One gather and one scatter per layer, whatever the number of rows.
        if self._rows_index is None:
            self._rows_index = self._index(writes, key_states.shape[1], key_states.shape[2], keys.device)
        source, target = self._rows_index
        dim = keys.shape[-1]
        keys.view(-1, dim).index_copy_(0, target, key_states.reshape(-1, dim).index_select(0, source))
        values.view(-1, dim).index_copy_(0, target, value_states.reshape(-1, dim).index_select(0, source))
        if first is not None:  # evenly spaced slots: attend over a view, no copy
            start, stride = first
            rows = slice(start, start + stride * len(writes), stride)
            return keys[rows, :, :length], values[rows, :, :length]
        return keys[slots, :, :length], values[slots, :, :length]

    def _index(self, writes, heads: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat row indices of every real token's (row, head) vector in the new states (rows, heads,
        width, dim), and of where it goes in a buffer (slots, heads, capacity, dim), in one transfer.
        A few numpy operations whatever the number of rows; a plain loop when there are few indices,
        where it is cheaper (a decoding step of one request)."""
        if len(writes) * heads <= 8:
            source, target = [], []
            for row, (slot, pad, start, end) in enumerate(writes):
                for head in range(heads):
                    first = (row * heads + head) * width + pad
                    source += range(first, first + end - start)
                    first = (slot * heads + head) * self.capacity + start
                    target += range(first, first + end - start)
            both = torch.tensor([source, target])
        else:
            slot, pad, start, end = np.array(writes, dtype=np.int64).T
            count = end - start  # real tokens per row
            row = np.repeat(np.arange(len(writes)), count)  # each real token's row and place in it
            offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
            head = np.arange(heads)[:, None]
            source = (row * heads + head) * width + pad[row] + offset
            target = (slot[row] * heads + head) * self.capacity + start[row] + offset
            both = torch.from_numpy(np.stack([source.ravel(), target.ravel()]))
        both = both.to(device)
        return both[0], both[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions are always passed explicitly

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        raise NotImplementedError("KVPool forwards always pass a prepared 4-D mask")


class Row:
    """One prompt and the tokens after it, in a slot of the pool: what a decoder asks logits of.

    `feed(output, keep)` is the part of a forward this row needs next: the tokens of
    ``prompt + output`` not cached yet, and the logits of the last `keep` of them. `crop(n)` forgets
    every output token from index n on (after a rejection).
    """

    def __init__(self, pool: KVPool, slot: int, prompt: Sequence[int]):
        self.pool, self.slot, self.prompt = pool, slot, list(prompt)

    @property
    def cached(self) -> int:
        return self.pool.lengths[self.slot]

    def feed(self, output: Sequence[int], keep: int = 1) -> "Feed":
        new = (self.prompt + list(output))[self.cached:]
        if len(new) < keep:
            raise ValueError("asked for logits of positions that are already cached")
        return Feed(self.slot, new, keep)

    def crop(self, output_length: int) -> None:
        self.pool.lengths[self.slot] = min(self.cached, len(self.prompt) + output_length)


@dataclass
class Feed:
    """One row's part of a forward: the slot, the tokens to feed, the logits wanted (last `keep`)."""

    slot: int
    tokens: Sequence[int]
    keep: int = 1
