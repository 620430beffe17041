"""Warping, sampling and the speculative accept/reject step as free tensor functions.

Everything here works on probability vectors of one position; nothing knows about models.
The decoding loop composes these functions; tests drive them with hand-built vectors.

Randomness: every random choice takes its uniform number as an argument. `Uniforms` hands out
three numbers per output position (draft, acceptance test, resample/bonus) from a counter-based
generator keyed by (seed, position). So the fast decoder and the slow reference decoder, which
consume positions in different orders, make the same choices token for token, and a fixed seed
reproduces a run exactly.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from .errors import InputError

Decision = Literal["accepted", "resampled", "bonus"]
# Below this mass the residual max(0, p - q) is rounding noise: sample from p instead.
RESIDUAL_EPS = 1e-6


@dataclass(frozen=True)
class SamplingConfig:
    """The warping applied identically to the judge (p) and the draft (q)."""

    temperature: float = 0.9
    top_k: int = 20
    top_p: float = 0.9
    greedy: bool = False

    def __post_init__(self):
        if not self.greedy and not self.temperature > 0:
            raise InputError("Temperature must be above 0 (use greedy decoding for a deterministic run).")
        if self.top_k < 0:
            raise InputError("top-k must be 0 (off) or a positive number of tokens.")
        if not 0 < self.top_p <= 1:
            raise InputError("top-p must be in (0, 1].")

    def to_dict(self) -> dict:
        return asdict(self)

    def processors(self) -> LogitsProcessorList:
        """transformers' own warpers, in generate()'s order. Greedy uses the raw distribution."""
        warpers = LogitsProcessorList()
        if self.greedy:
            return warpers
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        return warpers


def warped_probs(logits: torch.Tensor, processors: LogitsProcessorList) -> torch.Tensor:
    """Softmax in float32 of warped logits; `logits` is (rows, vocab)."""
    logits = logits.float()
    # The warpers ignore input_ids; they only need a tensor with the right batch size.
    logits = processors(torch.zeros((logits.shape[0], 1), dtype=torch.long), logits)
    return torch.softmax(logits, dim=-1)


def sample_index(probs: torch.Tensor, uniform: float) -> int:
    """Inverse-CDF sample from an (unnormalised) probability vector; never picks a zero entry."""
    cdf = torch.cumsum(probs, dim=-1)
    index = torch.searchsorted(cdf, cdf[-1] * uniform, right=True)
    return int(index.clamp(max=probs.shape[-1] - 1))


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where to resample after a rejection; p itself when that mass is ~0."""
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


@dataclass(frozen=True)
class JudgedToken:
    token_id: int
    decision: Decision
    u: float | None = None
    rejected_token_id: int | None = None


def speculative_sampling(p: torch.Tensor, q: torch.Tensor, draft: int, u: float, resample_uniform: float) -> JudgedToken:
    """Leviathan et al.'s accept/reject step for one drafted token (Persona-judge Algorithm 1).

    Accept `draft` when u <= p(draft)/q(draft); otherwise resample from norm(max(0, p - q)).
    """
    if p[draft] > 0 and u <= acceptance_ratio(float(p[draft]), float(q[draft])):
        return JudgedToken(draft, "accepted", u)
    token = sample_index(residual_distribution(p, q), resample_uniform)
    return JudgedToken(token, "resampled", u, rejected_token_id=draft)


def greedy_judging(p: torch.Tensor, q: torch.Tensor, draft: int) -> JudgedToken:
    """Deterministic form: keep the draft iff p(t) >= q(t), else argmax of max(0, p - q)."""
    if p[draft] >= q[draft]:
        return JudgedToken(draft, "accepted")
    return JudgedToken(int(torch.argmax(residual_distribution(p, q))), "resampled", rejected_token_id=draft)


def choose(probs: torch.Tensor, uniform: float, greedy: bool) -> int:
    """A plain sample (or argmax) from one distribution: drafts, bonus tokens, direct prompting."""
    return int(torch.argmax(probs)) if greedy else sample_index(probs, uniform)


class Uniforms:
    """Three U(0,1) numbers per output position, keyed by (seed, position)."""

    DRAFT, ACCEPT, RESAMPLE = 0, 1, 2

    def __init__(self, seed: int | None = None):
        self.seed = secrets.randbits(31) if seed is None else int(seed)

    def at(self, position: int) -> np.ndarray:
        bit_generator = np.random.Philox(np.random.SeedSequence([self.seed, position]))
        return np.random.Generator(bit_generator).random(3)
