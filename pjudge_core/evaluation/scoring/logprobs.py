"""Log-probabilities of responses under prompts, by teacher forcing (the shared scorer).

Every value comes from the model's raw (unwarped) log-softmax in float32; nothing here samples.

  * `sequence_logprobs(lm, [(prompt_ids, response_ids), ...])`: Σ log p(response tokens | prompt).
  * `token_logprobs(lm, items)`: the same, one value per response token (persona fit's heatmap).

Both score each distinct item once and never run one token at a time, in one of two ways:

  * ``share=True``: the prefix-tree scorer (`prefix_tree`): the sequences are merged into a radix
    tree, so a prompt is fed once and its KV cache reused by every response scored under it (and
    a system turn once for every prompt that starts with it); `batch_size` counts tree nodes
    (default 64). What the scorers of alignment accuracy, persona fit and persona inference use.
  * ``share=False`` (the default here): flat batches: items sorted by (length, tokens), padded on
    the right with an attention mask, `batch_size` whole sequences per forward (default 8),
    keeping only the positions that predict response tokens. The reference the shared scorer is
    tested against, and the benchmark's baseline.

Both give the same values up to float32 rounding (the tests hold them within 1e-4). A sequence
longer than the model's context is an `InputError`; callers that prefer to skip such items check
`fits_context` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from ...errors import InputError
from .prefix_tree import BATCH_SIZE as TREE_BATCH_SIZE
from .prefix_tree import Item, prefix_tree_logprobs, prefix_tree_token_logprobs

FLAT_BATCH_SIZE = 8  # whole sequences per forward, by default


def fits_context(lm, *lengths: int) -> bool:
    """True when a sequence of sum(lengths) tokens fits the model's context (or it has no limit)."""
    context = lm.context_length
    return not context or sum(lengths) <= context


def _check_context(lm, width: int) -> None:
    if not fits_context(lm, width):
        raise InputError(f"A prompt plus response is {width} tokens, longer than the model's context of "
                         f"{lm.context_length}.")


def _pad_id(lm) -> int:
    return lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0


def _scored_rows(lm, items: Sequence[Item], batch_size: int,
                 progress: Callable | None) -> Iterator[tuple[tuple, torch.Tensor]]:
    """((prompt, response), float32 log-probs of the response tokens) for each distinct item."""
    unique = sorted({(tuple(p), tuple(r)) for p, r in items}, key=lambda k: (len(k[0]) + len(k[1]), k))
    model = lm.model
    device = next(model.parameters()).device
    pad = _pad_id(lm)
    batch_size = max(1, int(batch_size))
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        seqs = [list(p) + list(r) for p, r in chunk]
        width = max(len(s) for s in seqs)
        _check_context(lm, width)
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
            yield (p, r), token_lp[row, lo:lo + len(r)]
        if progress:
            progress(min(start + batch_size, len(unique)), len(unique))


@torch.no_grad()
def sequence_logprobs(lm, items: Sequence[Item], *, batch_size: int | None = None, share: bool = False,
                      progress: Callable | None = None) -> list[float]:
    """Sum of log p(response tokens | prompt tokens) for each (prompt_ids, response_ids)."""
    if share:
        return prefix_tree_logprobs(lm, items, batch_size=batch_size or TREE_BATCH_SIZE, progress=progress)
    rows = _scored_rows(lm, items, batch_size or FLAT_BATCH_SIZE, progress)
    values = {key: float(lp.double().sum()) for key, lp in rows}
    return [values[(tuple(p), tuple(r))] for p, r in items]


@torch.no_grad()
def token_logprobs(lm, items: Sequence[Item], *, batch_size: int | None = None, share: bool = False,
                   progress: Callable | None = None) -> list[list[float]]:
    """log p(y_t | prompt, y_<t) for every response token t of each (prompt_ids, response_ids)."""
    if share:
        return prefix_tree_token_logprobs(lm, items, batch_size=batch_size or TREE_BATCH_SIZE, progress=progress)
    values = {key: lp.tolist() for key, lp in _scored_rows(lm, items, batch_size or FLAT_BATCH_SIZE, progress)}
    return [values[(tuple(p), tuple(r))] for p, r in items]
