"""The sampler serves every want of a step together, with hand-built logits: each answer equals what the
one-position functions of `sampling` (the reference decoders' arithmetic) give for that want alone, and
a group's host transfers do not grow with its size."""

import collections

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pjudge_core import DecodeSettings
from pjudge_core.engine.engine import Engine
from pjudge_core.engine.kv import Feed
from pjudge_core.engine.requests import Request
from pjudge_core.engine.sampler import Draw, FusedDraw, Judging, serve
from pjudge_core.engine.sampling import (
    Uniforms,
    Warping,
    choose,
    fuse_logits,
    greedy_judging,
    official_residual,
    residual_distribution,
    speculative_sampling,
)

VOCAB = 60
SAMPLED, GREEDY = DecodeSettings(), DecodeSettings(greedy=True)


def logits(rows: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=generator) * 3


def draws(settings: DecodeSettings, n: int, seed: int = 0) -> list[tuple[Draw, list[torch.Tensor]]]:
    generator, warping, uniforms = torch.Generator().manual_seed(seed), Warping(settings), Uniforms(seed)
    return [(Draw(Feed(i, [1]), warping, [i, i + 1], uniforms.at(i)[Uniforms.DRAFT]), [logits(1, generator)])
            for i in range(n)]


def judgings(settings: DecodeSettings, n: int, seed: int = 0) -> list[tuple[Judging, list[torch.Tensor]]]:
    """n judgings of 1-4 drafts each, half with the official rule; the drafts are sampled from their q, and
    p is q pushed around a little, so that both acceptances and rejections happen."""
    generator, warping, uniforms = torch.Generator().manual_seed(seed), Warping(settings), Uniforms(seed)
    wants = []
    for j in range(n):
        k = 1 + j % 4
        q_logits = logits(k, generator)
        qs = list(warping.probs(q_logits, [[]] * k))
        drafts = [choose(q, uniforms.at(10 * j + i)[Uniforms.DRAFT], settings.greedy) for i, q in enumerate(qs)]
        p_logits = torch.cat([q_logits + logits(k, generator) * 0.4, logits(1, generator)])
        numbers = [uniforms.at(10 * j + i) for i in range(k)]
        wants.append((Judging(Feed(j, [1] * (k + 1), keep=k + 1), warping, [[]] * (k + 1), drafts, qs,
                              [x[Uniforms.ACCEPT] for x in numbers], [x[Uniforms.RESAMPLE] for x in numbers],
                              [x[Uniforms.COIN] for x in numbers], uniforms.at(10 * j + k)[Uniforms.RESAMPLE],
                              official=j % 2 == 1), [p_logits]))
    return wants


@pytest.mark.parametrize("settings", [SAMPLED, GREEDY, DecodeSettings(top_k=0, top_p=0.8, temperature=0.6)])
def test_each_draw_of_a_group_is_the_token_choose_gives_for_its_row_alone(settings):
    wants = draws(settings, 12)
    for (want, (row,)), drawn in zip(wants, serve(wants)):
        probs = want.warping.probs(row, [want.context])[0]
        token = choose(probs, want.uniform, settings.greedy)
        assert (drawn.token, drawn.p) == (token, float(probs[token]))
        assert torch.equal(drawn.probs, probs)  # kept for the judge as q


@pytest.mark.parametrize("settings", [SAMPLED, GREEDY])
def test_each_judging_gives_the_numbers_speculative_sampling_decides_with(settings):
    wants = judgings(settings, 24)
    verdicts = serve(wants)
    seen = collections.Counter()
    for (want, (raw,)), verdict in zip(wants, verdicts):
        ps = want.warping.probs(raw, want.contexts)
        residual = official_residual if want.official else residual_distribution
        rejected_at = None
        for i, (draft, p, q) in enumerate(zip(want.drafts, ps, want.qs)):
            assert (verdict.p[i], verdict.q[i]) == (float(p[draft]), float(q[draft]))
            judged = (greedy_judging(p, q, draft, residual, want.coins[i]) if settings.greedy else
                      speculative_sampling(p, q, draft, want.accept_uniforms[i], want.resample_uniforms[i], residual,
                                           want.coins[i]))
            if judged.decision == "resampled":
                rejected_at = i
                assert (verdict.resampled, verdict.resampled_p, verdict.resampled_q) == (
                    judged.token_id, float(p[judged.token_id]), float(q[judged.token_id]))
                break
        assert verdict.rejected_at == rejected_at
        if rejected_at is None:
            bonus = choose(ps[-1], want.bonus_uniform, settings.greedy)
            assert (verdict.bonus, verdict.bonus_p) == (bonus, float(ps[-1][bonus]))
        seen["rejected" if rejected_at is not None else "all accepted"] += 1
    assert seen["rejected"] and seen["all accepted"]  # both paths were checked


def test_a_fused_draw_samples_the_fused_logits_and_reports_each_personas_probability_of_the_token():
    generator, warping, uniforms = torch.Generator().manual_seed(3), Warping(SAMPLED), Uniforms(3)
    weights = torch.tensor([0.25, 0.75])
    wants = [(FusedDraw([Feed(0, [1]), Feed(1, [1]), Feed(2, [1])], warping, [4, 5], uniforms.at(i)[0], weights,
                        alpha, 2), [logits(1, generator) for _ in range(3)]) for i, alpha in enumerate((0.0, 0.5))]
    for (want, raw), drawn in zip(wants, serve(wants)):
        personas = torch.cat(raw[:2])
        fused = fuse_logits(personas, weights, want.alpha, raw[2][0] if want.alpha else None)
        probs = warping.probs(fused[None], [want.context])[0]
        token = choose(probs, want.uniform, False)
        own = warping.probs(personas, [want.context] * 2)[:, token]
        assert (drawn.token, drawn.p) == (token, float(probs[token]))
        assert drawn.witnesses == [float(v) for v in own]


def test_wants_with_other_settings_are_processed_with_their_own():
    mixed = draws(SAMPLED, 4) + draws(DecodeSettings(temperature=0.3, top_k=5), 4, seed=1) + draws(GREEDY, 4, seed=2)
    for (want, (row,)), drawn in zip(mixed, serve(mixed)):
        probs = want.warping.probs(row, [want.context])[0]
        assert drawn.token == choose(probs, want.uniform, want.warping.greedy)


class HostTransfers(TorchFunctionMode):
    """Counts the calls that bring a tensor's values to the host (a sync on a GPU)."""

    SYNCS = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__float__,
             torch.Tensor.__bool__, torch.Tensor.numpy}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.SYNCS
        return func(*args, **(kwargs or {}))


def test_a_groups_host_transfers_do_not_grow_with_the_number_of_requests():
    def transfers(n: int) -> int:
        wants = draws(SAMPLED, n) + judgings(SAMPLED, n)
        with HostTransfers() as counter:
            serve(wants)
        return counter.count

    assert transfers(1) == transfers(8) == transfers(48) <= 5


def test_an_engine_steps_host_transfers_do_not_grow_with_the_number_of_requests(tiny_lm):
    """Every request of a step is sampled, judged and traced together: 16 Persona-judge requests cost an
    engine step the transfers one costs (the 13× host cost of one-by-one sampling was these, per request)."""
    def transfers_per_step(n: int) -> list[int]:
        engine = Engine(tiny_lm, rows=n)
        for i in range(n):
            engine.submit(Request("persona-judge", "Describe a sunset.", ["Be concise.", "Be imaginative."],
                                  DecodeSettings(seed=i, max_new_tokens=30), ignore_eos=True).job(tiny_lm))
        counts = []
        while engine.busy:
            with HostTransfers() as counter:
                engine.step()
            counts.append(counter.count)
        return counts

    # At most: the top-k width, one per group of draws, two per group of judgings (whatever its size).
    assert max(transfers_per_step(1)) <= 6 and max(transfers_per_step(16)) <= 6
