"""The sampler: what the decoders ask of a step's logits, computed for every request together.

A decoder that wants a token rather than raw logits yields a *want* instead of a bare `kv.Feed`:
  * `Draw`: sample a token from a feed's processed distribution (a draft, a direct token), or from a
    mix of several feeds' logits (fusion: `FusedDraw`); it is sent back a `Drawn` (the token, its
    probability, and the distribution itself, kept on the model's device for a judge);
  * `Judging`: the judge's forward over λ drafts; it is sent back a `Verdict`: the plain numbers
    Algorithm 1 decides with (p_i(t_i) and q_i(t_i) for every draft) and, computed ahead, the token
    resampled at the first rejection and the bonus token after λ accepts.
So a decoder's accept/reject test runs on plain floats and still reads like the paper.

Contract:
  * `serve(wants)` takes every want of one engine step with its feeds' logits. Wants of one kind
    with the same processing (`Warping.key`: the same settings) form one group, and a group costs a
    constant number of tensor operations and host transfers whatever its size: one `Warping.probs`
    over all its rows, one batched sample, one gather of the probabilities the trace records, one
    `tolist` (for judgings one more, after the acceptance tests). Per request there is only Python.
  * Row by row the arithmetic is that of `sampling`'s one-position functions (`choose`,
    `residual_distribution`, `official_residual`, `acceptance_ratio`), which the reference decoders
    use, so a request draws the same tokens batched or alone, and the same as its reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .kv import Feed
from .sampling import RESIDUAL_EPS, Warping, accepts, fuse_logits


@dataclass
class Draw:
    """Sample a token from the distribution at `feed`'s last position, with `uniform`."""

    feed: Feed
    warping: Warping
    context: list[int]  # the output so far (the repetition processors read it)
    uniform: float

    @property
    def feeds(self) -> list[Feed]:
        return [self.feed]

    def rows(self, logits: list[torch.Tensor]) -> tuple[torch.Tensor, list[list[int]]]:
        """The raw rows to process (the sampled one first) and their contexts."""
        return logits[0], [self.context]


@dataclass
class FusedDraw:
    """Fusion's token: sampled from ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀) over `feeds` (the personas', then ℓ₀'s when
    α > 0); `Drawn.witnesses` are the personas' own probabilities of it under the same processing."""

    feeds: list[Feed]
    warping: Warping
    context: list[int]
    uniform: float
    weights: torch.Tensor
    alpha: float
    personas: int

    def rows(self, logits: list[torch.Tensor]) -> tuple[torch.Tensor, list[list[int]]]:
        stacked = torch.cat(logits).float()
        personas = stacked[:self.personas]
        fused = fuse_logits(personas, self.weights, self.alpha, stacked[self.personas] if self.alpha > 0 else None)
        return torch.cat([fused[None], personas]), [self.context] * (1 + self.personas)


@dataclass
class Drawn:
    token: int
    p: float  # its probability under the distribution it was drawn from
    probs: torch.Tensor  # that distribution (on the model's device)
    witnesses: list[float] = field(default_factory=list)  # FusedDraw: each persona's probability of it


@dataclass
class Judging:
    """The judge's forward over `drafts` (kept: the k + 1 positions p_1..p_{k+1}); `qs` are the drafts'
    distributions (from their `Drawn`), `uniforms[i]` position i's four numbers (`sampling.Uniforms`),
    `bonus_uniform` the number a bonus token after k accepts is drawn with."""

    feed: Feed
    warping: Warping
    contexts: list[list[int]]
    drafts: list[int]
    qs: list[torch.Tensor]
    accept_uniforms: list[float]
    resample_uniforms: list[float]
    coins: list[float]
    bonus_uniform: float
    official: bool = False  # resample with `sampling.official_residual` (the official code), not Algorithm 1

    @property
    def feeds(self) -> list[Feed]:
        return [self.feed]

    def rows(self, logits: list[torch.Tensor]) -> tuple[torch.Tensor, list[list[int]]]:
        return logits[0], self.contexts


@dataclass
class Verdict:
    p: list[float]  # p_i(t_i): the judge's probability of each draft
    q: list[float]  # q_i(t_i): the drafter's
    rejected_at: int | None  # the first draft the acceptance test rejects (None: all accepted)
    resampled: int | None = None  # the token resampled there, with its p and q
    resampled_p: float | None = None
    resampled_q: float | None = None
    bonus: int | None = None  # after k accepts: a token from p_{k+1}, with its p
    bonus_p: float | None = None


Want = Draw | FusedDraw | Judging


def serve(wants: Sequence[tuple[Want, list[torch.Tensor]]]) -> list[Drawn | Verdict]:
    """Each want's answer (see the module docstring), in order; `wants` pairs each want with its feeds'
    logits. Draws and judgings with the same processing are served as one group each."""
    groups: dict[tuple, list[int]] = {}
    for i, (want, _) in enumerate(wants):
        groups.setdefault((want.warping.key, type(want)), []).append(i)
    answers: list = [None] * len(wants)
    for (_, kind), members in groups.items():
        group = [wants[i] for i in members]
        for i, answer in zip(members, (_judge if kind is Judging else _draw)(group)):
            answers[i] = answer
    return answers


def choose_rows(probs: torch.Tensor, uniforms: torch.Tensor, greedy: bool) -> torch.Tensor:
    """`sampling.choose` for each row of (rows, vocab) at once: argmax, or the inverse-CDF sample."""
    if greedy:
        return torch.argmax(probs, dim=-1)
    cdf = torch.cumsum(probs, dim=-1)
    index = torch.searchsorted(cdf, cdf[:, -1:] * uniforms[:, None], right=True)
    return index[:, 0].clamp(max=probs.shape[-1] - 1)


def residual_rows(p: torch.Tensor, q: torch.Tensor, draft_excess: torch.Tensor) -> torch.Tensor:
    """`sampling.residual_distribution` for each row (rows, vocab), or the official rule's norm(max(0, q − p))
    where `draft_excess` (rows,) is true; p where that mass is ~0."""
    residual = torch.clamp(torch.where(draft_excess[:, None], q - p, p - q), min=0)
    total = residual.sum(-1, keepdim=True)
    return torch.where(total <= RESIDUAL_EPS, p, residual / total)


def _processed(group: list[tuple[Want, list[torch.Tensor]]]) -> tuple[torch.Tensor, list[int]]:
    """Every row of the group's wants through their (common) `Warping` in one call, and each want's first row."""
    raw, contexts, firsts = [], [], []
    for want, logits in group:
        rows, row_contexts = want.rows(logits)
        firsts.append(len(contexts))
        raw.append(rows)
        contexts += row_contexts
    return group[0][0].warping.probs(torch.cat(raw), contexts), firsts


def _tensor(values: list, like: torch.Tensor, dtype=None) -> torch.Tensor:
    # (uniforms as float32, as the probabilities: cdf[-1] * u rounds as `sampling.sample_index`'s product does)
    return torch.tensor(values, dtype=dtype or like.dtype, device=like.device)


def _draw(group: list[tuple[Want, list[torch.Tensor]]]) -> list[Drawn]:
    """Every draw of a group: one processing, one sample, one gather, one transfer."""
    probs, firsts = _processed(group)
    greedy = group[0][0].warping.greedy
    sampled = probs[_tensor(firsts, probs, torch.long)] if len(firsts) < probs.shape[0] else probs
    tokens = choose_rows(sampled, _tensor([want.uniform for want, _ in group], sampled), greedy)
    values = [tokens.double(), sampled.gather(1, tokens[:, None])[:, 0].double()]
    if len(firsts) < probs.shape[0]:  # fusion: each persona's probability of its request's token
        owner = torch.repeat_interleave(torch.arange(len(firsts), device=probs.device),
                                        torch.diff(_tensor(firsts + [probs.shape[0]], probs, torch.long)))
        values.append(probs.gather(1, tokens[owner][:, None])[:, 0].double())
    flat = torch.cat(values).tolist()  # the one host transfer
    n, views = len(firsts), sampled.unbind(0)
    answers = [Drawn(int(flat[i]), flat[n + i], views[i]) for i in range(n)]
    if len(firsts) < probs.shape[0]:
        ends = firsts[1:] + [probs.shape[0]]
        for answer, first, end in zip(answers, firsts, ends):
            answer.witnesses = flat[2 * n + first + 1:2 * n + end]
    return answers


def _judge(group: list[tuple[Judging, list[torch.Tensor]]]) -> list[Verdict]:
    """Every judging of a group: the drafts' p and q in one transfer; the acceptance tests on the host, as
    the decoders run them; then the resampled and bonus tokens for all of them in one more transfer."""
    probs, firsts = _processed(group)
    wants = [want for want, _ in group]
    greedy = wants[0].warping.greedy
    ks = [len(want.drafts) for want in wants]
    at = [first - j for j, first in enumerate(firsts)]  # where each want's drafts start among all drafts
    rows = _tensor([first + i for first, k in zip(firsts, ks) for i in range(k)]
                   + [first + k for first, k in zip(firsts, ks)], probs, torch.long)
    p_rows, bonus_rows = probs[rows].split([len(rows) - len(ks), len(ks)])  # p_1..p_k of each; p_{k+1} of each
    q_rows = torch.stack([q for want in wants for q in want.qs])
    drafts = _tensor([t for want in wants for t in want.drafts], probs, torch.long)[:, None]
    flat = torch.cat([p_rows.gather(1, drafts), q_rows.gather(1, drafts)], 1).double().tolist()  # transfer 1
    verdicts, rejected, bonus = [], [], []
    for j, want in enumerate(wants):
        pq = flat[at[j]:at[j] + ks[j]]
        first = next((i for i, (p, q) in enumerate(pq) if not accepts(p, q, want.accept_uniforms[i], greedy)), None)
        verdicts.append(Verdict([p for p, _ in pq], [q for _, q in pq], first))
        if first is None:
            bonus.append(j)
        else:
            rejected.append((j, first))
    values = []
    if rejected:
        index = _tensor([at[j] + i for j, i in rejected], probs, torch.long)
        p_r, q_r = p_rows[index], q_rows[index]
        excess = _tensor([wants[j].official and wants[j].coins[i] < 0.5 for j, i in rejected], probs, torch.bool)
        uniforms = _tensor([wants[j].resample_uniforms[i] for j, i in rejected], probs)
        tokens = choose_rows(residual_rows(p_r, q_r, excess), uniforms, greedy)
        values += [tokens.double(), p_r.gather(1, tokens[:, None])[:, 0].double(),
                   q_r.gather(1, tokens[:, None])[:, 0].double()]
    if bonus:
        b_rows = bonus_rows[_tensor(bonus, probs, torch.long)] if len(bonus) < len(wants) else bonus_rows
        tokens = choose_rows(b_rows, _tensor([wants[j].bonus_uniform for j in bonus], probs), greedy)
        values += [tokens.double(), b_rows.gather(1, tokens[:, None])[:, 0].double()]
    flat = torch.cat(values).tolist()  # transfer 2
    n = len(rejected)
    for r, (j, _) in enumerate(rejected):
        verdicts[j].resampled, verdicts[j].resampled_p, verdicts[j].resampled_q = int(flat[r]), flat[n + r], flat[2 * n + r]
    flat, m = flat[3 * n:], len(bonus)
    for b, j in enumerate(bonus):
        verdicts[j].bonus, verdicts[j].bonus_p = int(flat[b]), flat[m + b]
    return verdicts
