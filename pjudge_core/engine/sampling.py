"""Warping, sampling and the speculative accept/reject step as free tensor functions.

Everything here works on probability vectors of one position; nothing knows about models.
The decoding loop composes these functions; tests drive them with hand-built vectors.

Randomness: every random choice takes its uniform number as an argument. `Uniforms` hands out
four numbers per output position (draft, acceptance test, resample/bonus, the official rule's
coin) from a counter-based
generator keyed by (seed, position). So the fast decoder and the slow reference decoder, which
consume positions in different orders, make the same choices token for token, and a fixed seed
reproduces a run exactly.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .settings import DecodeSettings

# What happened to an emitted token: a draft the judge accepted, a token resampled after a rejection, a
# bonus token after λ accepts (Persona-judge), plainly sampled (direct prompting), fused (fusion).
DECISIONS = ("accepted", "resampled", "bonus", "sampled", "fused")
Decision = str  # one of DECISIONS
Residual = Callable[[torch.Tensor, torch.Tensor, float | None], torch.Tensor]  # (p, q, coin) -> distribution
# Below this mass the residual max(0, p - q) is rounding noise: sample from p instead.
RESIDUAL_EPS = 1e-6


class Warping:
    """How raw logits become the next-token distribution, identically for every role and method.

    First the repetition processors (transformers' `RepetitionPenaltyLogitsProcessor` and
    `NoRepeatNGramLogitsProcessor`), each row with its own output prefix (never the prompt);
    then, unless greedy, transformers' warpers in generate()'s order (temperature, top-k,
    top-p); then a float32 softmax. Greedy decoding uses the penalised but unwarped distribution.

    With top-k on, `probs` runs the warpers on each row's top candidates only (every logit tied
    with the k-th largest included) and scatters the result back: the same distribution, since
    temperature keeps the order and everything below the k-th logit gets probability 0 anyway,
    without top-p sorting the whole vocabulary for every position (that sort was a fifth of a
    batched step's time with a 49k vocabulary).
    """

    def __init__(self, settings: DecodeSettings):
        self.greedy = settings.greedy
        # Requests whose processing is the same share one batched call (`sampler.serve`).
        self.key = ((True,) if settings.greedy else (False, settings.temperature, settings.top_k, settings.top_p)) + (
            settings.repetition_penalty, settings.no_repeat_ngram_size)
        self.repetition = LogitsProcessorList()
        if settings.repetition_penalty != 1.0:
            self.repetition.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
        if settings.no_repeat_ngram_size:
            self.repetition.append(NoRepeatNGramLogitsProcessor(settings.no_repeat_ngram_size))
        self.warpers = LogitsProcessorList()
        self.top_k = 0 if settings.greedy else settings.top_k
        if not settings.greedy:
            if settings.temperature != 1.0:
                self.warpers.append(TemperatureLogitsWarper(settings.temperature))
            if settings.top_k:
                self.warpers.append(TopKLogitsWarper(settings.top_k))
            if settings.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(settings.top_p))

    def penalised(self, logits: torch.Tensor, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Float32 logits after the repetition processors; row i's output so far is ``prefixes[i]``."""
        logits = logits.float()
        if self.repetition:
            rows = []
            for row, prefix in zip(logits, prefixes):
                ids = torch.tensor([list(prefix)], dtype=torch.long, device=logits.device)
                rows.append(_apply(self.repetition, ids, row.unsqueeze(0)))
            logits = torch.cat(rows)
        return logits

    def _warp(self, logits: torch.Tensor) -> torch.Tensor:
        return _apply(self.warpers, None, logits)  # (the warpers ignore input_ids)

    def logits(self, logits: torch.Tensor, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Processed float32 logits (rows, vocab) over the whole vocabulary (-inf where removed)."""
        return self._warp(self.penalised(logits, prefixes))

    def probs(self, logits: torch.Tensor, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token distributions (rows, vocab) in float32; see the class docstring."""
        logits = self.penalised(logits, prefixes)
        if not self.top_k or self.top_k >= logits.shape[-1]:
            return torch.softmax(self._warp(logits), dim=-1)
        values, index = torch.topk(logits, self.top_k, dim=-1)
        width = int((logits >= values[:, -1:]).sum(-1).max())  # ties with the k-th logit stay candidates
        if width > self.top_k:  # (rare: a tie at the k-th logit)
            values, index = torch.topk(logits, width, dim=-1)
        probs = torch.zeros_like(logits)
        return probs.scatter_(-1, index, torch.softmax(self._warp(values), dim=-1))


def _apply(processors: LogitsProcessorList, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
    """Each processor in turn, as calling the `LogitsProcessorList` does, without its inspecting every
    processor's signature at every call (a tenth of a millisecond per step)."""
    for processor in processors:
        scores = processor(input_ids, scores)
    return scores


def sample_index(probs: torch.Tensor, uniform: float) -> int:
    """Inverse-CDF sample from an (unnormalised) probability vector; never picks a zero entry."""
    cdf = torch.cumsum(probs, dim=-1)
    index = torch.searchsorted(cdf, cdf[-1] * uniform, right=True)
    return int(index.clamp(max=probs.shape[-1] - 1))


def residual_distribution(p: torch.Tensor, q: torch.Tensor, coin: float | None = None) -> torch.Tensor:
    """norm(max(0, p - q)): where to resample after a rejection; p itself when that mass is ~0.
    (`coin` is unused: only the official rule flips one.)"""
    residual = torch.clamp(p - q, min=0)
    total = residual.sum()
    if total <= RESIDUAL_EPS:
        return p
    return residual / total


def acceptance_ratio(p_token: float, q_token: float) -> float:
    """min(1, p/q); a token outside the judge's support (p = 0) is never accepted."""
    if p_token <= 0:
        return 0.0
    return min(1.0, p_token / q_token)


def accepts(p_token: float, q_token: float, u: float, greedy: bool) -> bool:
    """The judge's test of a draft from p(t) and q(t): u <= min(1, p/q), or, greedy, p(t) >= q(t)."""
    if greedy:
        return p_token >= q_token
    return p_token > 0 and u <= acceptance_ratio(p_token, q_token)


@dataclass(frozen=True)
class JudgedToken:
    token_id: int
    decision: Decision
    u: float | None = None
    rejected_token_id: int | None = None


def official_residual(p: torch.Tensor, q: torch.Tensor, coin: float | None) -> torch.Tensor:
    """The official code's resampling rule (Monncyann/Persona-judge), NOT Algorithm 1.

    ``trans_speculative_sampling`` resamples from norm(max(0, q - p)), the *draft's* excess,
    whenever sum(p - q) <= 0, and from norm(max(0, p - q)) otherwise. For two normalised
    distributions that sum is zero up to rounding, so rounding noise decides: a fair coin. Here the
    coin is the position's fourth uniform (``coin < 0.5``: the draft's excess) rather than the
    sign of our own rounding, which changes with the hardware and with the shape of a batched
    forward: so an official run is reproducible from its seed anywhere, alone or in a batch.
    Kept only to reproduce the published behaviour; a zero-mass residual falls back to p (the
    official code would divide by zero there).
    """
    residual = torch.clamp(q - p if coin < 0.5 else p - q, min=0)
    total = residual.sum()
    if total <= RESIDUAL_EPS:
        return p
    return residual / total


def speculative_sampling(p: torch.Tensor, q: torch.Tensor, draft: int, u: float, resample_uniform: float,
                         residual: Residual = residual_distribution, coin: float | None = None) -> JudgedToken:
    """Leviathan et al.'s accept/reject step for one drafted token (Persona-judge Algorithm 1).

    Accept `draft` when u <= p(draft)/q(draft); otherwise resample from norm(max(0, p - q))
    (or from another `residual` rule: `official_residual` reproduces the official code).
    """
    if accepts(float(p[draft]), float(q[draft]), u, greedy=False):
        return JudgedToken(draft, "accepted", u)
    token = sample_index(residual(p, q, coin), resample_uniform)
    return JudgedToken(token, "resampled", u, rejected_token_id=draft)


def greedy_judging(p: torch.Tensor, q: torch.Tensor, draft: int,
                   residual: Residual = residual_distribution, coin: float | None = None) -> JudgedToken:
    """Deterministic form: keep the draft iff p(t) >= q(t), else argmax of max(0, p - q)."""
    if accepts(float(p[draft]), float(q[draft]), 0.0, greedy=True):
        return JudgedToken(draft, "accepted")
    return JudgedToken(int(torch.argmax(residual(p, q, coin))), "resampled", rejected_token_id=draft)


def choose(probs: torch.Tensor, uniform: float, greedy: bool) -> int:
    """A plain sample (or argmax) from one distribution: drafts, bonus tokens, direct prompting."""
    return int(torch.argmax(probs)) if greedy else sample_index(probs, uniform)


def fuse_logits(persona_logits: torch.Tensor, weights: torch.Tensor, alpha: float,
                base_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Fusion's logits ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀) for one position (`methods.fusion`); `persona_logits` is
    (N, vocab), `weights` (N,)."""
    mixed = (weights.to(persona_logits)[:, None] * persona_logits).sum(0)  # on the logits' device (a GPU's)
    if alpha == 0:
        return mixed
    return base_logits + (1 + alpha) * (mixed - base_logits)


class Uniforms:
    """Four U(0,1) numbers per output position, keyed by (seed, position).

    Counter-based (Salmon et al.'s Philox4x64, numpy's): with the key (seed, 0), the block of four
    64-bit words at counter position + 1 gives the position's four numbers (each word's top 53 bits,
    as numpy's `random()` makes a double). A position's numbers are a function of the seed and the
    position alone, whatever was asked before; they are made `CHUNK` positions at a time, because
    setting up a generator costs about as much as a thousand blocks.
    """

    DRAFT, ACCEPT, RESAMPLE, COIN = 0, 1, 2, 3
    CHUNK = 64

    def __init__(self, seed: int | None = None):
        self.seed = secrets.randbits(31) if seed is None else int(seed)
        self._chunks: dict[int, list[tuple[float, ...]]] = {}

    def at(self, position: int) -> tuple[float, ...]:
        chunk, offset = divmod(position, self.CHUNK)
        numbers = self._chunks.get(chunk)
        if numbers is None:
            generator = np.random.Philox(key=[self.seed, 0], counter=[chunk * self.CHUNK, 0, 0, 0])
            flat = ((generator.random_raw(4 * self.CHUNK) >> np.uint64(11)) * 2.0 ** -53).tolist()
            numbers = self._chunks[chunk] = [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]
        return numbers[offset]
