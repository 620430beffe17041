"""Logit fusion and contrast: the personas mixed inside every token.

    ℓ = ℓ₀ + (1 + α) (Σᵢ wᵢ ℓᵢ − ℓ₀)

ℓᵢ are the model's logits under persona i, ℓ₀ under no preference, the weights wᵢ >= 0 sum to 1.
α = 0 is product-of-experts fusion (ℓ = Σ wᵢ ℓᵢ: the MOD idea on one model, and ℓ₀ is never
computed); α > 0 amplifies what the preferences change relative to no preference (contrastive /
context-aware decoding). The fused logits then go through the same `Warping` as every method
(repetition processors on the output, temperature / top-k / top-p) and are sampled (argmax when
greedy). Each Step records the fused probability p of the token and each persona's own
probability of it under the same processing (`persona_p`).

One cached forward per prompt per token (see `FUSION_BATCHING` for how they are run).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .caches import RoleCache
from .sampling import JudgedToken, Uniforms, Warping, choose
from .settings import DecodeSettings
from .trace import Recorder, Step


def fuse_logits(persona_logits: torch.Tensor, weights: torch.Tensor, alpha: float,
                base_logits: torch.Tensor | None = None) -> torch.Tensor:
    """ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀) for one position; `persona_logits` is (N, vocab), `weights` (N,)."""
    mixed = (weights.to(persona_logits.dtype)[:, None] * persona_logits).sum(0)
    if alpha == 0:
        return mixed
    return base_logits + (1 + alpha) * (mixed - base_logits)


def fusion_steps(lm, prompts: dict[str, list[int]], base_prompt: list[int] | None, weights: Sequence[float],
                 alpha: float, recorder: Recorder, settings: DecodeSettings,
                 uniforms: Uniforms) -> Iterator[Step]:
    labels = list(prompts)
    roles = [RoleCache(lm.model, ids) for ids in prompts.values()]
    base = RoleCache(lm.model, base_prompt) if alpha > 0 else None
    w = torch.tensor(list(weights), dtype=torch.float32)
    warping = Warping(settings)
    output: list[int] = []
    while not recorder.finished(output, settings.max_new_tokens):
        persona_logits = torch.cat([role.logits(output) for role in roles]).float()
        base_logits = base.logits(output)[0].float() if base is not None else None
        fused = fuse_logits(persona_logits, w, alpha, base_logits)
        p = warping.probs(fused[None], [output])[0]
        token = choose(p, uniforms.at(len(output))[Uniforms.DRAFT], settings.greedy)
        own = warping.probs(persona_logits, [output] * len(labels))[:, token]
        output.append(token)
        yield recorder.step(p, None, JudgedToken(token, "fused"),
                            persona_p={label: float(v) for label, v in zip(labels, own)})
    passes = sum(r.forward_passes for r in roles) + (base.forward_passes if base is not None else 0)
    prompt_list = list(prompts.values()) + ([base_prompt] if base is not None else [])
    return recorder.result(passes, prompt_list)
