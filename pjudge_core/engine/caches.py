"""KV caches: one per prompt (role), over the same weights.

`RoleCache` holds one prompt and an explicit `DynamicCache` over prompt + output tokens. It only
ever feeds tokens the cache has not seen, and `crop` forgets output tokens after a rejection, so
nothing is recomputed. Every decoder (Persona-judge, direct prompting, fusion) is built from
these; each forward is a batch of one, so no padding is ever needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

# Architectures whose causal-LM head is exactly `lm_head(hidden)`: no soft-capping, no logit scale.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2"}


def uses_split_projection(model) -> bool:
    """Project hidden states to logits ourselves on CPU float32 for plain-head architectures.

    Why: on CPU, MKL's matrix-vector path for ``hidden @ W.T`` with W the (vocab x hidden)
    head is ~2.5x slower than the matrix-matrix path of ``W @ hidden.T`` with two columns
    (SmolLM2: 11 ms vs 4.5 ms per token, most of a drafter forward's overhead). GPUs and
    other architectures use the model's own forward.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return (
        model.device.type == "cpu"
        and getattr(model.config, "model_type", None) in PLAIN_HEAD_MODELS
        and isinstance(head, torch.nn.Linear) and head.bias is None
        and head.weight.dtype == torch.float32
    )


def project_to_vocabulary(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits (positions, vocab) = hidden @ W.T, computed as (W @ hidden.T).T with >= 2 columns."""
    weight = model.get_output_embeddings().weight
    rows = hidden.shape[0]
    if rows == 1:
        hidden = torch.cat([hidden, hidden])  # two columns select MKL's fast matrix-matrix kernel
    return (weight @ hidden.T).T[:rows]


class RoleCache:
    """One role's prompt and KV cache over prompt + output tokens.

    `logits(output, keep)` feeds the tokens of ``prompt + output`` the cache has not seen yet, in
    one forward, and returns the logits of the last `keep` positions. `crop(n)` forgets every
    output token from index n on. `forward_passes` counts forwards.
    """

    def __init__(self, model, prompt: Sequence[int]):
        self.model = model
        self.prompt = list(prompt)
        self.cache = DynamicCache(config=model.config)
        self.seen = 0  # tokens of prompt + output held in the cache
        self.forward_passes = 0
        self.split_projection = uses_split_projection(model)

    def logits(self, output: Sequence[int], keep: int = 1) -> torch.Tensor:
        sequence = self.prompt + list(output)
        new = sequence[self.seen:]
        if len(new) < keep:
            raise ValueError("asked for logits of positions that are already cached")
        ids = torch.tensor([new], dtype=torch.long, device=self.model.device)
        with torch.no_grad():
            if self.split_projection:
                hidden = self.model.get_decoder()(input_ids=ids, past_key_values=self.cache, use_cache=True)
                logits = project_to_vocabulary(self.model, hidden.last_hidden_state[0, -keep:, :])
            else:
                out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=keep)
                logits = out.logits[0, -keep:, :]
        self.forward_passes += 1
        self.seen = len(sequence)
        return logits

    def crop(self, output_length: int) -> None:
        length = len(self.prompt) + output_length
        if self.seen > length:
            self.cache.crop(-(self.seen - length))  # transformers 5: negative = tokens to remove
            self.seen = length


class BatchedCache:
    """Several prompts as the rows of one batch, all followed by the same output tokens (fusion).

    The prompts are padded on the left, with an attention mask and explicit position ids
    (cumsum(mask) − 1), so every row sees exactly its own prompt. `logits(output)` feeds the
    output tokens the cache has not seen (the same ones in every row) in one forward and returns
    each row's next-token logits, (rows, vocab). Why rows and not one cache per prompt: on this
    CPU a forward of two rows costs ~1.5x one row, two batch-one forwards 2x (SmolLM2-135M).
    """

    def __init__(self, model, prompts: Sequence[Sequence[int]]):
        self.model = model
        width = max(len(p) for p in prompts)
        pad = 0
        self.pending = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
        self.mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
        self.cache = DynamicCache(config=model.config)
        self.next_position = torch.zeros((len(prompts), 1), dtype=torch.long)
        self.seen_output = 0
        self.forward_passes = 0
        self.split_projection = uses_split_projection(model)

    def logits(self, output: Sequence[int]) -> torch.Tensor:
        new = list(output[self.seen_output:])
        rows = self.mask.shape[0]
        device = self.model.device
        if self.seen_output == 0 and self.forward_passes == 0:  # first call: the prompts, then any output
            ids = torch.cat([self.pending, torch.tensor([new] * rows, dtype=torch.long).reshape(rows, len(new))], 1)
            mask = torch.cat([self.mask, torch.ones((rows, len(new)), dtype=torch.long)], 1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
        else:
            if not new:
                raise ValueError("asked for logits of positions that are already cached")
            ids = torch.tensor([new] * rows, dtype=torch.long)
            mask = torch.cat([self.mask, torch.ones((rows, len(new)), dtype=torch.long)], 1)
            positions = self.next_position + torch.arange(len(new))
        with torch.no_grad():
            kwargs = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                          past_key_values=self.cache, use_cache=True)
            if self.split_projection:
                hidden = self.model.get_decoder()(**kwargs).last_hidden_state[:, -1, :]
                logits = project_to_vocabulary(self.model, hidden)
            else:
                logits = self.model(**kwargs, logits_to_keep=1).logits[:, -1, :]
        self.forward_passes += 1
        self.mask = mask
        self.next_position = positions[:, -1:] + 1
        self.seen_output = len(output)
        return logits
