"""Slow, literal decoders kept to check the fast ones token for token.

No KV cache, no streaming, no tracing: every distribution is computed by a full forward over
prompt + text so far. `reference_persona_judge` drafts λ tokens, scores them with the judge and
applies the block rules of Algorithm 1; `reference_fusion` fuses the personas' logits position by
position. Both draw their random numbers from the same `Uniforms` positions and process logits
with the same `Warping` as the fast decoders, so on the same model, settings and seed both must
emit the same tokens with the same decisions.
"""

from __future__ import annotations

import torch

from .fusion import fuse_logits
from .methods import fusion_options, labelled
from .persona_judge import fixed, rotating
from .prompting import prompt_ids
from .sampling import Uniforms, Warping, choose, greedy_judging, speculative_sampling
from .settings import DecodeSettings


def _logits(model, prompt: list[int], tokens: list[int], count: int) -> torch.Tensor:
    """Raw logits at the last `count` positions of prompt + tokens (one full forward, no cache)."""
    ids = torch.tensor([prompt + tokens], dtype=torch.long, device=model.device)
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits[0, -count:, :]


def reference_persona_judge(lm, query: str, preferences, settings: DecodeSettings) -> list[tuple[int, str, str]]:
    """[(token_id, decision, drafter)] for every emitted token."""
    prefs = labelled(preferences)
    labels = list(prefs)
    schedule = rotating(labels) if settings.alternate else fixed(labels)
    prompts = {label: prompt_ids(lm.tokenizer, query, [text]) for label, text in prefs.items()}
    warping, uniforms, greedy = Warping(settings), Uniforms(settings.seed), settings.greedy
    out: list[tuple[int, str, str]] = []
    block = 0
    while len(out) < settings.max_new_tokens and not (out and out[-1][0] in lm.eos_token_ids):
        drafter, judge = schedule(block)
        text = [t for t, _, _ in out]
        drafts, qs = [], []
        for _ in range(min(settings.lam, settings.max_new_tokens - len(out))):
            context = text + drafts
            q = warping.probs(_logits(lm.model, prompts[drafter], context, 1), [context])[0]
            drafts.append(choose(q, uniforms.at(len(context))[Uniforms.DRAFT], greedy))
            qs.append(q)
            if drafts[-1] in lm.eos_token_ids:
                break
        contexts = [text + drafts[:i] for i in range(len(drafts) + 1)]
        ps = warping.probs(_logits(lm.model, prompts[judge], text + drafts, len(drafts) + 1), contexts)
        all_accepted = True
        for i, draft in enumerate(drafts):
            _, u, b, _ = uniforms.at(len(text) + i)
            judged = greedy_judging(ps[i], qs[i], draft) if greedy else speculative_sampling(ps[i], qs[i], draft, u, b)
            out.append((judged.token_id, judged.decision, drafter))
            if judged.decision == "resampled" or judged.token_id in lm.eos_token_ids:
                all_accepted = False
                break
        if all_accepted and len(drafts) == settings.lam and len(out) < settings.max_new_tokens:
            out.append((choose(ps[-1], uniforms.at(len(out))[Uniforms.RESAMPLE], greedy), "bonus", drafter))
        block += 1
    return out


def reference_fusion(lm, query: str, preferences, settings: DecodeSettings, *, weights=None,
                     alpha: float = 0.0) -> list[int]:
    """Token ids of fusion decoding, recomputing every prompt's logits from scratch at each position."""
    prefs = labelled(preferences)
    weights, alpha = fusion_options(len(prefs), weights, alpha)
    prompts = [prompt_ids(lm.tokenizer, query, [text]) for text in prefs.values()]
    base = prompt_ids(lm.tokenizer, query, [])
    warping, uniforms = Warping(settings), Uniforms(settings.seed)
    out: list[int] = []
    while len(out) < settings.max_new_tokens and not (out and out[-1] in lm.eos_token_ids):
        persona_logits = torch.cat([_logits(lm.model, p, out, 1) for p in prompts]).float()
        base_logits = _logits(lm.model, base, out, 1)[0].float() if alpha > 0 else None
        fused = fuse_logits(persona_logits, torch.tensor(weights), alpha, base_logits)
        p = warping.probs(fused[None], [out])[0]
        out.append(choose(p, uniforms.at(len(out))[Uniforms.DRAFT], settings.greedy))
    return out
