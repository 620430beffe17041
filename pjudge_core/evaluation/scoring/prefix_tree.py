"""log p(response | prompt) for many items whose token sequences share prefixes, each shared run of
tokens fed once.

`prefix_tree_logprobs(lm, [(prompt_ids, response_ids), ...])` returns what
`logprobs.sequence_logprobs` returns (Σ over the response tokens), and
`prefix_tree_token_logprobs` what `logprobs.token_logprobs` returns (one value per response
token), and `prefix_tree_distributions` the whole next-token distribution at every response
position (log-probs over the vocabulary, for divergences between prompts: `self_judge.sensitivity`),
from the raw log-softmax in float32 by teacher forcing, computed differently: the sequences prompt + response are merged into a radix tree of tokens, so a run of
tokens that several sequences share (a persona's system turn, a query asked twice, the words
chosen and rejected answers start with) is one node, fed once, whose KV cache every continuation
reuses. Persona inference scores 6 candidates × 4 pairs × 2 answers this way; alignment accuracy
and persona fit score each prompt once for every response under it (`logprobs`, ``share=True``).

How: each node is fed its parent's last token followed by its own tokens but the last, so its
outputs predict exactly its own tokens (the parent's last token is fed once per child). The tree
is fed level by level. A level's nodes are sorted by length and cut into batches of at most
`batch_size`, at the points that minimise padded positions plus `FORWARD_OVERHEAD` per forward;
each batch is padded on the right, with explicit position ids and an attention mask whose zeros
hide the padding of every ancestor, on a cache gathered from its parents' rows (whichever batches
they ran in; this reads the cache layers' ``keys`` / ``values``). Only the positions some item
needs reach the output head: for architectures whose head is a plain linear layer the needed
hidden states are gathered first (padding never costs a vocabulary projection) and projected
`HEAD_ROWS` at a time (the float32 logits of every scored position at once would take gigabytes
for long answers and large vocabularies); other models return logits for the needed suffix of
the batch from their own forward.

Duplicate items are scored once; the tree and the batches depend only on the set of distinct
items, not on their order, so a permuted input gives bit-identical values. Building the tree
recurses once per branching level (a few for prompts and answers). A sequence longer than the
context is an `InputError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from ...engine.runner import plain_head, project_to_vocabulary
from ...engine.scheduler import FORWARD_OVERHEAD, cut_batches  # a forward's fixed cost, in positions
from ...errors import InputError

Item = tuple[Sequence[int], Sequence[int]]
INLINE_LIMIT = 16
BATCH_SIZE = 64  # most nodes per forward, by default
HEAD_ROWS = 1024  # positions projected to the vocabulary at once: 200 MB of float32 logits for 49k tokens


@dataclass(eq=False)
class _Node:
    start: int  # position of tokens[0] in every sequence through this node
    tokens: list[int]
    children: list["_Node"] = field(default_factory=list)
    terminal: bool = False  # some sequence ends here
    need: int | None = None  # first position whose log-prob some item needs (None: none)
    logprobs: torch.Tensor | None = None  # float32 log-probs of the tokens at positions [need, end)

    @property
    def end(self) -> int:
        return self.start + len(self.tokens)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _build(seqs: list[tuple[int, ...]], depth: int) -> list[_Node]:
    """Radix-tree nodes of sorted `seqs` that share their first `depth` tokens and are longer than that."""
    nodes = []
    for _, group in itertools.groupby(seqs, key=lambda s: s[depth]):
        group = list(group)
        # Sorted: the longest prefix the whole group shares is the one its first and last share.
        end = depth + common_prefix_length(group[0][depth:], group[-1][depth:])
        nodes.append(_Node(depth, list(group[0][depth:end]), _build([s for s in group if len(s) > end], end),
                           terminal=len(group[0]) == end))
    return nodes


def _inline(nodes: list[_Node]) -> list[_Node]:
    """Push a tiny shared run (the word two answers start with, a prompt fragment) down into its
    children when that duplicates fewer than `INLINE_LIMIT` positions: the level it would need
    is usually a forward of its own (bottom up; never where a sequence ends)."""
    out = []
    for node in nodes:
        node.children = _inline(node.children)
        if node.children and not node.terminal and (len(node.children) - 1) * len(node.tokens) < INLINE_LIMIT:
            out += [_pushed(node, child) for child in node.children]
        else:
            out.append(node)
    return out


def _pushed(node: _Node, child: _Node) -> _Node:
    return _Node(node.start, node.tokens + child.tokens, child.children, child.terminal)


def _top_level(seqs: list[tuple[int, ...]]) -> list[_Node]:
    """The first level. A top node of one token has nothing to feed (position 0 is never
    predicted), so it is always pushed into its children; and the whole top level is while
    duplicating it costs less than the forward it takes (all the personas' prompts start with the
    same template tokens: one pass fewer)."""
    level = _inline(_build(seqs, 0))
    while all(n.children and not n.terminal for n in level) and \
            sum((len(n.children) - 1) * len(n.tokens) for n in level) < FORWARD_OVERHEAD:
        level = [_pushed(n, child) for n in level for child in n.children]
    out = []
    while level:
        node = level.pop()
        if len(node.tokens) >= 2:
            out.append(node)
        else:
            level += [_pushed(node, child) for child in node.children]
    return sorted(out, key=lambda n: n.tokens)


def _path(roots: list[_Node], seq: tuple[int, ...]) -> list[_Node]:
    path, nodes = [], roots
    while len(seq) > (path[-1].end if path else 0):
        at = path[-1].end if path else 0
        node = next(n for n in nodes if tuple(n.tokens) == seq[at:at + len(n.tokens)])
        path.append(node)
        nodes = node.children
    return path


class _Runner:
    """Feeds the tree level by level; each level in length-sorted batches cut to waste little padding."""

    def __init__(self, lm, batch_size: int, progress: Callable | None, total: int, full: bool = False):
        self.full = full  # keep each needed position's whole log-softmax, not only its token's
        self.model = lm.model
        self.device = next(lm.model.parameters()).device
        self.pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        self.batch_size = max(1, int(batch_size))
        self.plain = plain_head(lm.model)  # the engine's head policy (`engine.runner`)
        self.progress, self.total, self.done = progress, total, 0

    def run(self, roots: list[_Node]) -> None:
        level = [(node, None, None) for node in roots]  # (node, parent, parent's last token)
        states: dict = {}  # parent node -> (its batch's cache, that batch's mask, its row)
        while level:
            built = {}
            for chunk in self._chunks(level):
                cache, mask = self._gather(chunk, states)
                mask = self.forward(chunk, cache, mask)
                built.update({node: (cache, mask, row) for row, (node, _, _) in enumerate(chunk) if node.children})
            level = [(child, node, node.tokens[-1]) for node in built for child in node.children]
            states = built

    def _chunks(self, level):
        """Length-sorted batches of at most `batch_size` nodes, cut where padding would cost more than a forward."""
        level = sorted(level, key=lambda s: (len(s[0].tokens), s[0].tokens))  # order-independent
        batches = cut_batches([len(node.tokens) for node, _, _ in level], FORWARD_OVERHEAD, self.batch_size)
        return [level[a:b] for a, b in batches]

    def _gather(self, chunk, states):
        """A new cache (and mask) holding each node's parent row, from whichever batches the parents ran in."""
        if chunk[0][1] is None:
            return DynamicCache(config=self.model.config), torch.zeros((len(chunk), 0), dtype=torch.long)
        sources = [states[parent] for _, parent, _ in chunk]
        width = max(mask.shape[1] for _, mask, _ in sources)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        groups: dict = {}  # id(source cache) -> (cache, rows here, rows there); the padding at the end stays masked
        for i, (cache, source_mask, row) in enumerate(sources):
            mask[i, :source_mask.shape[1]] = source_mask[row]
            _, here, there = groups.setdefault(id(cache), (cache, [], []))
            here.append(i)
            there.append(row)
        layers = []
        for n in range(len(sources[0][0].layers)):
            keys = values = None
            for cache, here, there in groups.values():
                k, v = cache.layers[n].keys, cache.layers[n].values
                if keys is None:
                    shape = (len(chunk), k.shape[1], width, k.shape[3])
                    keys, values = k.new_zeros(shape), v.new_zeros(shape)
                here_t, there_t = torch.tensor(here, device=k.device), torch.tensor(there, device=k.device)
                keys[here_t, :, :k.shape[2]] = k[there_t]
                values[here_t, :, :v.shape[2]] = v[there_t]
            layers.append((keys, values))
        return DynamicCache(layers, config=self.model.config), mask

    def forward(self, chunk, cache, mask) -> torch.Tensor:
        inputs = [([] if last is None else [last]) + node.tokens[:-1] for node, _, last in chunk]
        first = [node.start - (last is not None) for node, _, last in chunk]  # position of each input's first token
        width = max(len(x) for x in inputs)
        ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
        own = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, x in enumerate(inputs):
            ids[r, :len(x)] = torch.tensor(x)
            own[r, :len(x)] = 1
        positions = torch.tensor(first)[:, None] + torch.arange(width)[None, :]
        mask = torch.cat([mask, own], 1)
        # Input column j predicts the token at position first + j + 1; a node needs columns from `need - first - 1`.
        wanted = [(r, node.need - first[r] - 1, len(inputs[r])) for r, (node, _, _) in enumerate(chunk)
                  if node.need is not None]
        batch = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                     position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)
        if self.plain:
            hidden = self.model.get_decoder()(**batch).last_hidden_state
            project = lambda r, c: project_to_vocabulary(self.model, hidden[r, c])  # noqa: E731
        else:
            keep = width - min((lo for _, lo, _ in wanted), default=width - 1)
            logits = self.model(**batch, logits_to_keep=keep).logits[:, -keep:]
            project = lambda r, c: logits[r, c - (width - keep)]  # noqa: E731
        if wanted:
            self._store(chunk, wanted, first, project)
        self.done += len(chunk)
        if self.progress:
            self.progress(self.done, self.total)
        return mask

    def _store(self, chunk, wanted, first, project) -> None:
        """Each node's log-probs of its needed tokens (or, `full`, their whole distributions), from
        `project(rows, columns)` -> logits, HEAD_ROWS at a time."""
        spots = [(r, c, chunk[r][0].tokens[c + first[r] + 1 - chunk[r][0].start]) for r, lo, hi in wanted
                 for c in range(lo, hi)]
        r_idx, c_idx, targets = (torch.tensor(v, device=self.device) for v in zip(*spots))
        pieces = []
        for s in range(0, len(spots), HEAD_ROWS):
            lp = torch.log_softmax(project(r_idx[s:s + HEAD_ROWS], c_idx[s:s + HEAD_ROWS]).float(), -1)
            pieces.append(lp.cpu() if self.full else lp.gather(-1, targets[s:s + HEAD_ROWS, None])[:, 0])
        token_lp = torch.cat(pieces)
        at = 0
        for r, lo, hi in wanted:
            chunk[r][0].logprobs = token_lp[at:at + hi - lo]
            at += hi - lo


@torch.no_grad()
def prefix_tree_logprobs(lm, items: Sequence[Item], *, batch_size: int = BATCH_SIZE,
                         progress: Callable | None = None) -> list[float]:
    """Σ log p(response tokens | prompt tokens) for each (prompt_ids, response_ids), shared prefixes fed once.

    `batch_size` is the most nodes per forward. `progress(done, total)` counts nodes.
    """
    return [float(lp.double().sum()) for lp in _item_logprobs(lm, items, batch_size, progress)]


@torch.no_grad()
def prefix_tree_token_logprobs(lm, items: Sequence[Item], *, batch_size: int = BATCH_SIZE,
                               progress: Callable | None = None) -> list[list[float]]:
    """log p(y_t | prompt, y_<t) for every response token t of each (prompt_ids, response_ids), shared
    prefixes fed once (`batch_size` and `progress` as in `prefix_tree_logprobs`)."""
    return [lp.tolist() for lp in _item_logprobs(lm, items, batch_size, progress)]


@torch.no_grad()
def prefix_tree_distributions(lm, items: Sequence[Item], *, batch_size: int = BATCH_SIZE,
                              progress: Callable | None = None) -> list[torch.Tensor]:
    """log p(· | prompt, y_<t) over the whole vocabulary at every response position t of each
    (prompt_ids, response_ids): a float32 tensor [len(response), vocabulary] per item, on the CPU (a
    128-token answer under a 49k vocabulary is 25 MB: score a few prompts at a time)."""
    return _item_logprobs(lm, items, batch_size, progress, full=True)


def _item_logprobs(lm, items: Sequence[Item], batch_size: int, progress: Callable | None,
                   full: bool = False) -> list[torch.Tensor]:
    """One float32 tensor of response-token log-probs per item ([tokens], or [tokens, vocabulary] when
    `full`; duplicates share one; empty responses are empty)."""
    keys = [(tuple(p) + tuple(r), len(p)) for p, r in items]
    for (seq, start), (p, _) in zip(keys, items):
        if not p:
            raise InputError("Cannot score a response to an empty prompt.")
        if lm.context_length and len(seq) > lm.context_length:
            raise InputError(f"A prompt plus response is {len(seq)} tokens, longer than the model's context of "
                             f"{lm.context_length}.")
    scored = sorted({k for k in keys if len(k[0]) > k[1]})  # an empty response scores 0 and needs no forward
    roots = _top_level(sorted({seq for seq, _ in scored}))
    paths = {}
    for seq, start in scored:
        paths[(seq, start)] = path = _path(roots, seq)
        for node in path:
            if node.end > start:
                lo = max(node.start, start, 1)
                node.need = lo if node.need is None else min(node.need, lo)
    total = sum(1 for _ in _walk(roots))
    _Runner(lm, batch_size, progress, total, full).run(roots)
    # An item's tokens are the tails of the nodes on its path from the first response position on.
    values = {key: torch.cat([node.logprobs[max(key[1], node.start) - node.need:] for node in path
                              if node.end > key[1]]) for key, path in paths.items()}
    empty = torch.zeros(0)
    return [values.get(k, empty) for k in keys]


def _walk(nodes: list[_Node]):
    for node in nodes:
        yield node
        yield from _walk(node.children)
