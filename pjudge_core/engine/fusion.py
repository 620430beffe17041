"""Logit fusion and contrast: the personas mixed inside every token.

    ℓ = ℓ₀ + (1 + α) (Σᵢ wᵢ ℓᵢ − ℓ₀)

ℓᵢ are the model's logits under persona i, ℓ₀ under no preference, the weights wᵢ >= 0 sum to 1.
α = 0 is product-of-experts fusion (ℓ = Σ wᵢ ℓᵢ: the MOD idea on one model, and ℓ₀ is never
computed); α > 0 amplifies what the preferences change relative to no preference (contrastive /
context-aware decoding). The fused logits then go through the same `Warping` as every method
(repetition processors on the output, temperature / top-k / top-p) and are sampled (argmax when
greedy). Each Step records the fused probability p of the token and each persona's own
probability of it under the same processing (`persona_p`).

One forward per token, the prompts (personas, and no preference when α > 0) as rows of the same
forward (the engine puts feeds of the same width together): measured on 2 CPU cores with
SmolLM2-135M, two rows cost 1.48x a batch-one forward, two batch-one forwards 1.99x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .kv import Row
from .sampling import JudgedToken, Uniforms, Warping, choose
from .settings import DecodeSettings
from .trace import Recorder


def fuse_logits(persona_logits: torch.Tensor, weights: torch.Tensor, alpha: float,
                base_logits: torch.Tensor | None = None) -> torch.Tensor:
    """ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀) for one position; `persona_logits` is (N, vocab), `weights` (N,)."""
    mixed = (weights.to(persona_logits.dtype)[:, None] * persona_logits).sum(0)
    if alpha == 0:
        return mixed
    return base_logits + (1 + alpha) * (mixed - base_logits)


def fusion_steps(rows: list[Row], labels: list[str], weights: Sequence[float], alpha: float, recorder: Recorder,
                 settings: DecodeSettings, uniforms: Uniforms):
    """`rows` are the personas' prompts in `labels` order, then ℓ₀'s when α > 0; yields the feeds of
    every row before each token (and is sent their logits), then the token's `Step`."""
    w = torch.tensor(list(weights), dtype=torch.float32)
    warping = Warping(settings)
    output: list[int] = []
    while not recorder.finished(output, settings.max_new_tokens):
        logits = torch.cat((yield [row.feed(output) for row in rows])).float()
        persona_logits = logits[:len(labels)]
        base_logits = logits[len(labels)] if alpha > 0 else None
        fused = fuse_logits(persona_logits, w, alpha, base_logits)
        p = warping.probs(fused[None], [output])[0]
        token = choose(p, uniforms.at(len(output))[Uniforms.DRAFT], settings.greedy)
        own = warping.probs(persona_logits, [output] * len(labels))[:, token]
        output.append(token)
        yield recorder.step(p, None, JudgedToken(token, "fused"),
                            persona_p={label: float(v) for label, v in zip(labels, own)})
    return recorder.result([row.prompt for row in rows])
