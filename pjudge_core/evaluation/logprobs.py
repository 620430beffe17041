"""Log-probabilities of responses under prompts, by teacher forcing (the shared scorer).

`sequence_logprobs(lm, [(prompt_ids, response_ids), ...])` sums log p(response tokens | prompt)
from the model's raw (unwarped) log-softmax in float32. Duplicate items are scored once; items
are sorted by (length, tokens), padded on the right with an attention mask and run several per
forward, keeping only the positions that predict response tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import InputError


@torch.no_grad()
def sequence_logprobs(lm, items: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int = 8,
                      progress: Callable | None = None) -> list[float]:
    """Sum of log p(response tokens | prompt tokens) for each (prompt_ids, response_ids).

    Duplicate items are scored once. Items are sorted by (length, tokens), padded on the right
    with an attention mask, and run several per forward; log-softmax in float32, only over the
    positions that predict response tokens.
    """
    keys = [(tuple(p), tuple(r)) for p, r in items]
    unique = sorted(set(keys), key=lambda k: (len(k[0]) + len(k[1]), k))
    model = lm.model
    device = next(model.parameters()).device
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    context = lm.context_length
    values: dict = {}
    batch_size = max(1, int(batch_size))
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        seqs = [list(p) + list(r) for p, r in chunk]
        width = max(len(s) for s in seqs)
        if context and width > context:
            raise InputError(f"A prompt plus response is {width} tokens, longer than the model's context of {context}.")
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        # Positions whose next-token prediction is a response token: [len(prompt) - 1, len(seq) - 1).
        first = min(len(p) for p, _ in chunk) - 1
        last = width - 1
        keep = torch.arange(first, last, device=device)
        try:
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep).logits
        except TypeError:  # a model without logits_to_keep
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        if logits.shape[1] != last - first:  # the keyword was ignored: all positions came back
            logits = logits[:, first:last]
        logp = torch.log_softmax(logits.float(), -1)
        targets = ids[:, first + 1:last + 1].to(device)
        token_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (rows, last - first)
        for row, (p, r) in enumerate(chunk):
            lo = len(p) - 1 - first
            values[(p, r)] = float(token_lp[row, lo:lo + len(r)].double().sum())
        if progress:
            progress(min(start + batch_size, len(unique)), len(unique))
    return [values[k] for k in keys]
