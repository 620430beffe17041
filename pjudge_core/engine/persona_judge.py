"""Persona-judge decoding (arXiv 2504.12663, Algorithm 1) for two to four personas.

Contract:
  * One copy of the weights. Each persona has its own prompt and its own row of the engine's KV
    pool (`kv.Row`). Where Algorithm 1 runs the model, the decoder yields that row's `Feed` and the
    engine sends back the logits, computed in a forward it shares with other requests' rows
    (`engine.Engine`); a request decoded alone is the special case of a batch of one.
  * A block, exactly as Algorithm 1: the drafter samples t_1..t_k from q (k = min(λ, tokens left),
    fewer if it drafts end-of-sequence), one forward of the judge over all drafts gives
    p_1..p_{k+1}; t_i is accepted when u_i <= p_i(t_i)/q_i(t_i); at the first rejection the token
    is resampled from norm(max(0, p_i - q_i)) and the block ends; after λ accepts a bonus token
    comes from p_{λ+1}.
  * Who drafts and who judges block b is the `Schedule`'s answer: `rotating` (persona b mod N
    drafts, persona (b + 1) mod N judges; for two personas the paper's alternation), `fixed`
    (A drafts, B judges: Persona-judge-Base), or `swap_once` (the official code's behaviour).
  * Nothing is recomputed: a row only ever feeds tokens it has not cached; after a rejection
    every row is cropped back to the committed text. The resampled or bonus token is in no row
    yet; the next feed of each persona carries it.
  * q and p come from the same `Warping` (repetition processors on each position's own output
    prefix, then temperature / top-k / top-p), so the method stays exact with respect to the
    processed distributions.
  * Stops at end-of-sequence or after ``max_new_tokens``, whichever comes first.
  * All randomness comes from `Uniforms(seed)`, keyed by output position: the same seed gives the
    same tokens in any batch, and `reference.py` (the same algorithm without caches) gives them too.
"""

from __future__ import annotations

from collections.abc import Callable

from .kv import Row
from .sampling import (
    JudgedToken,
    Residual,
    Uniforms,
    Warping,
    choose,
    greedy_judging,
    residual_distribution,
    speculative_sampling,
)
from .settings import DecodeSettings
from .trace import Recorder

Schedule = Callable[[int], tuple[str, str]]  # block index -> (drafter label, judge label)


def rotating(labels: list[str]) -> Schedule:
    """Block b is drafted by persona b mod N and judged by persona (b + 1) mod N."""
    return lambda block: (labels[block % len(labels)], labels[(block + 1) % len(labels)])


def fixed(labels: list[str]) -> Schedule:
    """Persona-judge-Base: the first persona always drafts, the second always judges."""
    return lambda block: (labels[0], labels[1])


def swap_once(labels: list[str]) -> Schedule:
    """The official code: the roles swap after the first block and never swap back."""
    return lambda block: (labels[0], labels[1]) if block == 0 else (labels[1], labels[0])


def persona_judge_steps(rows: dict[str, Row], recorder: Recorder, settings: DecodeSettings, uniforms: Uniforms,
                        schedule: Schedule, residual: Residual = residual_distribution):
    """Algorithm 1, block by block: yields a row's `Feed` where it needs logits (and is sent them),
    each `Step` as the judge decides it, and returns the `Result` (see `engine.Task`)."""
    warping, greedy, lam = Warping(settings), settings.greedy, settings.lam
    output: list[int] = []
    block = 0
    while not recorder.finished(output, settings.max_new_tokens):
        drafter, judge = schedule(block)
        start = len(output)

        # 1. The drafter samples t_1..t_k from q autoregressively (k <= λ, stopping at EOS).
        drafts, qs = [], []
        while len(drafts) < min(lam, settings.max_new_tokens - start):
            context = output + drafts
            q = warping.probs((yield rows[drafter].feed(context)), [context])[0]
            drafts.append(choose(q, uniforms.at(start + len(drafts))[Uniforms.DRAFT], greedy))
            qs.append(q)
            if recorder.is_eos(drafts[-1]):
                break

        # 2. The judge scores every draft, and the position after them, in one forward: p_1..p_{k+1}.
        contexts = [output + drafts[:i] for i in range(len(drafts) + 1)]
        ps = warping.probs((yield rows[judge].feed(output + drafts, keep=len(drafts) + 1)), contexts)

        # 3. Accept t_i while u_i <= p_i(t_i)/q_i(t_i); resample from norm(max(0, p - q)) at the first rejection.
        for i, (draft, p, q) in enumerate(zip(drafts, ps, qs)):
            _, accept_u, resample_u, coin = uniforms.at(start + i)
            judged = (greedy_judging(p, q, draft, residual, coin) if greedy
                      else speculative_sampling(p, q, draft, accept_u, resample_u, residual, coin))
            output.append(judged.token_id)
            yield recorder.step(p, q, judged, block=block, drafter=drafter, judge=judge)
            if judged.decision == "resampled" or recorder.is_eos(judged.token_id):
                break
        else:
            # 4. All λ drafts accepted: a bonus token from the judge's p_{λ+1}.
            if len(drafts) == lam and len(output) < settings.max_new_tokens:
                bonus = choose(ps[-1], uniforms.at(len(output))[Uniforms.RESAMPLE], greedy)
                output.append(bonus)
                yield recorder.step(ps[-1], None, JudgedToken(bonus, "bonus"), block=block, drafter=drafter,
                                    judge=judge)

        # 5. Forget rejected drafts; the schedule names the next block's drafter and judge.
        accepted = start + sum(s.decision == "accepted" for s in recorder.steps[start:])
        for row in rows.values():
            row.crop(accepted)
        block += 1
    return recorder.result([row.prompt for row in rows.values()])
