"""Persona-judge decoding (arXiv 2504.12663, Algorithm 1) for two to four personas, and the
official code's behaviour as a variant of it.

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
  * Stops at end-of-sequence, after ``max_new_tokens``, or at a stop string, whichever comes first
    (`trace.Trace`); the drafts of a block after the token that completed a stop string are dropped.
  * All randomness comes from `Uniforms(seed)`, keyed by output position: the same seed gives the
    same tokens in any batch, and `reference` (the same algorithm without caches) gives them too.

The official code (Monncyann/Persona-judge) differs in two ways, kept only to reproduce it: its
roles swap once and never back, and a rejection may resample from the draft's excess
(`sampling.official_residual`). It is the method ``official``.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import InputError
from ..kv import Row
from ..personas import labelled
from ..prompting import persona_prompts
from ..runner import full_logits
from ..sampler import Draw, Judging
from ..sampling import (
    JudgedToken,
    Uniforms,
    Warping,
    accepts,
    choose,
    greedy_judging,
    official_residual,
    residual_distribution,
    speculative_sampling,
)
from ..settings import DecodeSettings
from ..trace import Trace
from .registry import Method, Panel

Schedule = Callable[[int], tuple[str, str]]  # block index -> (drafter label, judge label)
# The acceptance rate assumed when estimating what a token costs (a ZeroGPU call's duration): measured
# 0.78-0.93 over the paper's preset pairs on the bundled 135M model (docs/benchmarks.md), 0.69-0.71 for
# the form pairs it follows clearly (docs/evaluation.md); lower for larger models, whose personas pull
# further apart.
ASSUMED_ACCEPTANCE = 0.7
PERSONA_JUDGE, OFFICIAL = "persona-judge", "official"


def rotating(labels: list[str]) -> Schedule:
    """Block b is drafted by persona b mod N and judged by persona (b + 1) mod N."""
    return lambda block: (labels[block % len(labels)], labels[(block + 1) % len(labels)])


def fixed(labels: list[str]) -> Schedule:
    """Persona-judge-Base: the first persona always drafts, the second always judges."""
    return lambda block: (labels[0], labels[1])


def swap_once(labels: list[str]) -> Schedule:
    """The official code: the roles swap after the first block and never swap back."""
    return lambda block: (labels[0], labels[1]) if block == 0 else (labels[1], labels[0])


def persona_judge_steps(rows: dict[str, Row], trace: Trace, settings: DecodeSettings, uniforms: Uniforms,
                        schedule: Schedule, official: bool = False):
    """Algorithm 1, block by block: yields what it needs of the model (a draft to `Draw`, the drafts'
    `Judging`) and is sent the numbers it decides with (`sampler`), and yields each `Step` as the
    judge decides it (see `engine.Job`). `official`: resample as the official code does."""
    warping, greedy, lam = Warping(settings), settings.greedy, settings.lam
    output: list[int] = []
    block = 0
    while not trace.finished(output, settings.max_new_tokens):
        drafter, judge = schedule(block)
        roles = dict(block=block, drafter=drafter, judge=judge)
        start = len(output)

        # 1. The drafter samples t_1..t_k from q autoregressively (k <= λ, stopping at EOS).
        drafts, qs = [], []
        while len(drafts) < min(lam, settings.max_new_tokens - start):
            context = output + drafts
            drawn = yield Draw(rows[drafter].feed(context), warping, context, uniforms.at(len(context))[Uniforms.DRAFT])
            drafts.append(drawn.token)
            qs.append(drawn.probs)
            if trace.is_eos(drafts[-1]):
                break

        # 2. The judge scores every draft, and the position after them, in one forward: p_1..p_{k+1}.
        k = len(drafts)
        numbers = [uniforms.at(start + i) for i in range(k)]
        verdict = yield Judging(rows[judge].feed(output + drafts, keep=k + 1), warping,
                                [output + drafts[:i] for i in range(k + 1)], drafts, qs,
                                accept_uniforms=[n[Uniforms.ACCEPT] for n in numbers],
                                resample_uniforms=[n[Uniforms.RESAMPLE] for n in numbers],
                                coins=[n[Uniforms.COIN] for n in numbers],
                                bonus_uniform=uniforms.at(start + k)[Uniforms.RESAMPLE], official=official)

        # 3. Accept t_i while u_i <= p_i(t_i)/q_i(t_i); resample from norm(max(0, p - q)) at the first rejection.
        for i, draft in enumerate(drafts):
            p, q, u = verdict.p[i], verdict.q[i], None if greedy else numbers[i][Uniforms.ACCEPT]
            if not accepts(p, q, u, greedy):
                output.append(verdict.resampled)
                yield trace.step(JudgedToken(verdict.resampled, "resampled", u, rejected_token_id=draft),
                                 verdict.resampled_p, verdict.resampled_q, rejected=(p, q), **roles)
                break
            output.append(draft)
            yield trace.step(JudgedToken(draft, "accepted", u), p, q, **roles)
            if trace.ends(draft):  # end-of-sequence (always the last draft), or a stop string completed
                trace.dropped = drafts[i + 1:]
                break
        else:
            # 4. All λ drafts accepted: a bonus token from the judge's p_{λ+1}.
            if k == lam and len(output) < settings.max_new_tokens:
                output.append(verdict.bonus)
                yield trace.step(JudgedToken(verdict.bonus, "bonus"), verdict.bonus_p, None, **roles)

        # 5. Forget rejected drafts; the schedule names the next block's drafter and judge.
        accepted = start + sum(s.decision == "accepted" for s in trace.steps[start:])
        for row in rows.values():
            row.crop(accepted)
        block += 1


def _starter(schedules: tuple[Callable, Callable], official: bool) -> Callable:
    """How a run starts, given its schedules (roles alternating, roles fixed) and its resampling rule."""
    alternating, fixed_roles = schedules

    def start(lm, query, prefs, settings, options, uniforms, trace):
        prompts, trace.record["prompts"] = persona_prompts(lm.tokenizer, query, prefs)
        labels = list(prefs)
        schedule = (alternating if settings.alternate else fixed_roles)(labels)

        def decoder(rows):
            return persona_judge_steps(dict(zip(labels, rows)), trace, settings, uniforms, schedule, official)
        return list(prompts.values()), decoder
    return start


def _check(prefs: dict, settings: DecodeSettings) -> None:
    n = len(prefs)
    if n < 2:
        raise InputError(f"{PERSONA_JUDGE} needs at least two preferences (A drafts, B judges); got {n}.")
    if not settings.alternate and n != 2:
        raise InputError(f"Persona-judge-Base (fixed roles) needs exactly two preferences; got {n}. "
                         "Use alternating roles for three or four personas.")


def _check_official(prefs: dict, settings: DecodeSettings) -> None:
    n = len(prefs)
    if n < 2:
        raise InputError(f"{OFFICIAL} needs at least two preferences (A drafts, B judges); got {n}.")
    if n != 2:
        raise InputError(f"The official-code behaviour is defined for two preferences only; got {n}.")


def period(settings: DecodeSettings) -> int:
    """A block is λ drafting steps and one judging step."""
    return settings.lam + 1


def forwards_per_token(settings: DecodeSettings) -> float:
    """λ + 1 forwards a block, which keeps (1 − a^(λ+1)) / (1 − a) tokens on average at acceptance a."""
    a = ASSUMED_ACCEPTANCE
    return (settings.lam + 1) / ((1 - a ** (settings.lam + 1)) / (1 - a))


def _title(base: str, fixed_roles: str) -> Callable:
    return lambda personas, options: (fixed_roles if options.pop("alternate", True) is False else base,
                                      options, personas is not None)


def reference(schedules: tuple[Callable, Callable], official: bool):
    """The slow, literal decoder: every distribution from a full forward over prompt + text so far
    (no cache, no trace), the same `Warping` and `Uniforms` positions: on the same model, settings
    and seed it emits what the fast decoder emits. Returns [(token_id, decision, drafter)]."""
    alternating, fixed_roles = schedules
    residual = official_residual if official else residual_distribution

    def decode(lm, query: str, preferences, settings: DecodeSettings, **options) -> list[tuple[int, str, str]]:
        prefs = labelled(preferences)
        labels = list(prefs)
        schedule = (alternating if settings.alternate else fixed_roles)(labels)
        prompts, _ = persona_prompts(lm.tokenizer, query, prefs)
        warping, uniforms, greedy = Warping(settings), Uniforms(settings.seed), settings.greedy
        out: list[tuple[int, str, str]] = []
        block = 0
        while len(out) < settings.max_new_tokens and not (out and out[-1][0] in lm.eos_token_ids):
            drafter, judge = schedule(block)
            text = [t for t, _, _ in out]
            drafts, qs = [], []
            for _ in range(min(settings.lam, settings.max_new_tokens - len(out))):
                context = text + drafts
                q = warping.probs(full_logits(lm.model, prompts[drafter], context, 1), [context])[0]
                drafts.append(choose(q, uniforms.at(len(context))[Uniforms.DRAFT], greedy))
                qs.append(q)
                if drafts[-1] in lm.eos_token_ids:
                    break
            contexts = [text + drafts[:i] for i in range(len(drafts) + 1)]
            ps = warping.probs(full_logits(lm.model, prompts[judge], text + drafts, len(drafts) + 1), contexts)
            all_accepted = True
            for i, draft in enumerate(drafts):
                _, u, b, coin = uniforms.at(len(text) + i)
                judged = (greedy_judging(ps[i], qs[i], draft, residual, coin) if greedy
                          else speculative_sampling(ps[i], qs[i], draft, u, b, residual, coin))
                out.append((judged.token_id, judged.decision, drafter))
                if judged.decision == "resampled" or judged.token_id in lm.eos_token_ids:
                    all_accepted = False
                    break
            if all_accepted and len(drafts) == settings.lam and len(out) < settings.max_new_tokens:
                out.append((choose(ps[-1], uniforms.at(len(out))[Uniforms.RESAMPLE], greedy), "bonus", drafter))
            block += 1
        return out
    return decode


ALGORITHM_1 = ((rotating, fixed), False)  # (schedules, official resampling rule)
OFFICIAL_CODE = ((swap_once, fixed), True)

METHOD = Method(
    name=PERSONA_JUDGE,
    description="Persona-judge (Algorithm 1): one persona drafts λ tokens, the next judges them in one pass; the "
                "roles rotate every block (fixed roles with alternate=False: Persona-judge-Base).",
    start=_starter(*ALGORITHM_1),
    check=_check,
    variants={"persona-judge-base": {"alternate": False}},
    title=_title("Persona-judge", "Persona-judge-Base"),
    period=period,
    forwards_per_token=forwards_per_token,
    judged=True,
    panels=(
        Panel("persona-judge", "Persona-judge", "one persona drafts λ tokens, the next judges them; roles rotate "
              "every block", position=0, default=True,
              spec=lambda o: PERSONA_JUDGE if o.alternate else "persona-judge-base"),
        Panel("persona-judge-base", "Persona-judge-Base (fixed roles)", "A always drafts, B always judges",
              position=2, personas=(2,)),
    ),
    reference=reference(*ALGORITHM_1),
    examples=("persona-judge", "persona-judge-base", "persona-judge(lam=2)", "persona-judge(lam=6)",
              "persona-judge[A,C]"),
)

OFFICIAL_METHOD = Method(
    name=OFFICIAL,
    description="Official-code behaviour, not Algorithm 1: roles swap once and never back, and a rejection may "
                "resample from the draft's excess max(0, q − p) (Monncyann/Persona-judge).",
    start=_starter(*OFFICIAL_CODE),
    check=_check_official,
    variants={"official-base": {"alternate": False}},
    title=_title("Official code", "Official code (fixed roles)"),
    period=period,
    forwards_per_token=forwards_per_token,
    judged=True,
    panels=(Panel("official", "Official code (not Algorithm 1)", "what the official code does: roles swap once, "
                  "some rejections resample from the draft", position=8, personas=(2,)),),
    reference=reference(*OFFICIAL_CODE),
    examples=("official", "official-base"),
)
