"""Log-probabilities of responses under prompts, by teacher forcing (the shared scorer).

Every value comes from the model's raw (unwarped) log-softmax in float32; nothing here samples.

  * `sequence_logprobs(lm, [(prompt_ids, response_ids), ...])`: Σ log p(response tokens | prompt).
  * `token_logprobs(lm, items)`: the same, one value per response token (persona fit's heatmap).
  * `branch_logprobs(lm, [(prefix_ids, [continuation_ids, ...]), ...])`: Σ log p(continuation |
    prefix) for several continuations of one prefix, the prefix run once and its KV cache shared
    by the continuations (persona inference: chosen and rejected share the prompt).

The first two score each distinct item once: items are sorted by (length, tokens), padded on the
right with an attention mask and run several per forward, keeping only the positions that predict
response tokens. Nothing is ever run one token at a time. A sequence longer than the model's
context is an `InputError`; callers that prefer to skip such items check `fits_context` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from transformers import DynamicCache

from ..errors import InputError

Item = tuple[Sequence[int], Sequence[int]]


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
def sequence_logprobs(lm, items: Sequence[Item], *, batch_size: int = 8,
                      progress: Callable | None = None) -> list[float]:
    """Sum of log p(response tokens | prompt tokens) for each (prompt_ids, response_ids)."""
    values = {key: float(lp.double().sum()) for key, lp in _scored_rows(lm, items, batch_size, progress)}
    return [values[(tuple(p), tuple(r))] for p, r in items]


@torch.no_grad()
def token_logprobs(lm, items: Sequence[Item], *, batch_size: int = 8,
                   progress: Callable | None = None) -> list[list[float]]:
    """log p(y_t | prompt, y_<t) for every response token t of each (prompt_ids, response_ids)."""
    values = {key: lp.tolist() for key, lp in _scored_rows(lm, items, batch_size, progress)}
    return [values[(tuple(p), tuple(r))] for p, r in items]


# --------------------------------------------------------------------------- shared prefixes

def _forward(model, **inputs):
    try:
        return model(**inputs).logits
    except TypeError:  # a model without logits_to_keep
        inputs.pop("logits_to_keep", None)
        return model(**inputs).logits


@torch.no_grad()
def branch_logprobs(lm, groups: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], *, batch_size: int = 8,
                    progress: Callable | None = None) -> list[list[float]]:
    """Σ log p(continuation | prefix) for each continuation of each (prefix_ids, [continuation_ids, ...]).

    Each prefix is run once and its KV cache is shared by its continuations: a forward over
    `batch_size` prefixes (right-padded), then one over all their continuations, the cache rows
    repeated per continuation. The prefix's last token is fed with each continuation instead of
    with the prefix, so its prediction of the continuation's first token comes out of the second
    forward and the first needs no logits; the padding between prefix and continuation is masked
    and positions are passed explicitly. An empty continuation scores 0. Prefixes of one token
    (nothing to cache) go through `sequence_logprobs`.
    """
    model = lm.model
    device = next(model.parameters()).device
    pad = _pad_id(lm)
    results: list[list[float | None]] = [[None] * len(conts) for _, conts in groups]
    todo = []
    for g, (prefix, conts) in enumerate(groups):
        prefix = list(prefix)
        if not prefix:
            raise InputError("Cannot score a continuation of an empty prompt.")
        for c, cont in enumerate(conts):
            _check_context(lm, len(prefix) + len(cont))
            if not cont:
                results[g][c] = 0.0
        if len(prefix) >= 2 and any(conts):
            todo.append(g)
    short = [(g, c) for g, (prefix, conts) in enumerate(groups) if len(prefix) < 2 for c, cont in enumerate(conts) if cont]
    if short:
        values = sequence_logprobs(lm, [(groups[g][0], groups[g][1][c]) for g, c in short], batch_size=batch_size)
        for (g, c), v in zip(short, values):
            results[g][c] = v
    # Similar prefix lengths together: less padding.
    todo.sort(key=lambda g: (len(groups[g][0]), g))
    batch_size = max(1, int(batch_size))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        heads = [list(groups[g][0][:-1]) for g in chunk]
        width = max(len(h) for h in heads)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        head_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, h in enumerate(heads):
            ids[row, :len(h)] = torch.tensor(h)
            head_mask[row, :len(h)] = 1
        cache = DynamicCache(config=model.config)
        _forward(model, input_ids=ids.to(device), attention_mask=head_mask.to(device), past_key_values=cache,
                 use_cache=True, logits_to_keep=1)
        # One row per non-empty continuation: the prefix's last token, then all but the continuation's last.
        rows = [(row, g, c) for row, g in enumerate(chunk) for c, cont in enumerate(groups[g][1]) if cont]
        length = max(len(groups[g][1][c]) for _, g, c in rows)
        tail = torch.full((len(rows), length), pad, dtype=torch.long)
        tail_mask = torch.zeros((len(rows), length), dtype=torch.long)
        targets = torch.full((len(rows), length), pad, dtype=torch.long)
        for i, (row, g, c) in enumerate(rows):
            prefix, cont = groups[g][0], list(groups[g][1][c])
            tail[i, :len(cont)] = torch.tensor([prefix[-1]] + cont[:-1])
            tail_mask[i, :len(cont)] = 1
            targets[i, :len(cont)] = torch.tensor(cont)
        source = torch.tensor([row for row, _, _ in rows])
        cache.batch_select_indices(source.to(device))
        starts = torch.tensor([len(heads[row]) for row, _, _ in rows])
        positions = starts[:, None] + torch.arange(length)[None, :]
        logits = _forward(model, input_ids=tail.to(device),
                          attention_mask=torch.cat([head_mask[source], tail_mask], 1).to(device),
                          position_ids=positions.to(device), past_key_values=cache, use_cache=True,
                          logits_to_keep=length)
        logp = torch.log_softmax(logits[:, -length:].float(), -1)
        token_lp = logp.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)
        for i, (_, g, c) in enumerate(rows):
            results[g][c] = float(token_lp[i, :len(groups[g][1][c])].double().sum())
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
    return results
