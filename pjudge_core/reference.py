"""A slow, literal Persona-judge (Algorithm 1) kept to check the fast decoder token for token.

No KV cache, no streaming, no tracing: every distribution is computed by a full forward over
prompt + text so far, the drafter drafts λ tokens, the judge scores them, and the block rules are
applied. It draws its random numbers from the same `Uniforms` positions as `decoding.py`, so on
the same model, settings and seed both must emit the same tokens with the same decisions.
"""

from __future__ import annotations

import torch

from .prompting import prompt_ids
from .sampling import SamplingConfig, Uniforms, choose, greedy_judging, speculative_sampling, warped_probs


def _distributions(model, prompt: list[int], tokens: list[int], count: int, processors) -> torch.Tensor:
    """Warped next-token distributions at the last `count` positions of prompt + tokens."""
    ids = torch.tensor([prompt + tokens], dtype=torch.long, device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0, -count:, :]
    return warped_probs(logits, processors)


def reference_persona_judge(lm, query, pref_a, pref_b, *, max_new_tokens=128, lam=4, alternate=True,
                            temperature=0.9, top_k=20, top_p=0.9, greedy=False, seed=0):
    """Returns [(token_id, decision, drafter)] for every emitted token."""
    sampling = SamplingConfig(temperature, top_k, top_p, greedy)
    processors, uniforms = sampling.processors(), Uniforms(seed)
    prompts = {"A": prompt_ids(lm.tokenizer, query, [pref_a]), "B": prompt_ids(lm.tokenizer, query, [pref_b])}
    out: list[tuple[int, str, str]] = []
    drafter = "A"
    while len(out) < max_new_tokens and not (out and out[-1][0] in lm.eos_token_ids):
        judge = "B" if drafter == "A" else "A"
        text = [t for t, _, _ in out]
        drafts, qs = [], []
        for _ in range(min(lam, max_new_tokens - len(out))):
            q = _distributions(lm.model, prompts[drafter], text + drafts, 1, processors)[0]
            drafts.append(choose(q, uniforms.at(len(text) + len(drafts))[0], greedy))
            qs.append(q)
            if drafts[-1] in lm.eos_token_ids:
                break
        ps = _distributions(lm.model, prompts[judge], text + drafts, len(drafts) + 1, processors)
        all_accepted = True
        for i, draft in enumerate(drafts):
            _, u, b = uniforms.at(len(text) + i)
            judged = greedy_judging(ps[i], qs[i], draft) if greedy else speculative_sampling(ps[i], qs[i], draft, u, b)
            out.append((judged.token_id, judged.decision, drafter))
            if judged.decision == "resampled" or judged.token_id in lm.eos_token_ids:
                all_accepted = False
                break
        if all_accepted and len(drafts) == lam and len(out) < max_new_tokens:
            out.append((choose(ps[-1], uniforms.at(len(out))[2], greedy), "bonus", drafter))
        if alternate:
            drafter = judge
    return out
