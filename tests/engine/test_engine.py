"""The batched engine on a tiny random model: many requests of every method in one batch decode
exactly as they do alone; the KV pool gives each row only its own tokens; requests join, leave,
fail and are cancelled without disturbing the others, from other threads too."""

import random
import threading

import pytest
import torch
from conftest import make_tiny_lm

from pjudge_core import DecodeSettings, InputError
from pjudge_core.bench import batch_check
from pjudge_core.engine.api import stream_job
from pjudge_core.engine.engine import MAX_ROWS, Engine
from pjudge_core.engine.kv import Feed, KVPool
from pjudge_core.engine.requests import Request, check_rows, generate_many, stream_many
from pjudge_core.engine.runner import ModelRunner
from pjudge_core.engine.scheduler import FORWARD_OVERHEAD, cut_batches, plan_forwards

QUERIES = ["Describe a sunset", "Be concise and tell me a story about the sea in vivid detail, please.", "Hi",
           "Explain like I am in elementary school why the sea is blue and the sunset is red."]
PREFS = ["Be concise.", "Be imaginative.", "Be funny.", "Be formal."]


def mixed_requests(count: int, seed: int = 0) -> list[Request]:
    """Every method, 2-4 personas, different prompts, budgets, seeds, λ, repetition settings."""
    return batch_check.mixed_requests(count, seed=seed, max_new_tokens=40, queries=QUERIES, preferences=PREFS)


def alone(lm, request):
    return stream_job(lm, request.job(lm)).run()


def trace(result):
    return [(s.token_id, s.decision, s.drafter, s.judge, s.block) for s in result.steps]


def assert_same_run(batched, single):
    assert trace(batched) == trace(single)
    for a, b in zip(batched.steps, single.steps):
        assert a.p == pytest.approx(b.p, abs=1e-4)
        assert (a.q is None) == (b.q is None) and (a.q is None or a.q == pytest.approx(b.q, abs=1e-4))
    assert batched.text == single.text and batched.stats["stopped_by"] == single.stats["stopped_by"]


# --------------------------------------------------------------------------- exactness

def test_100_mixed_requests_decoded_together_equal_their_lone_runs_token_for_token(tiny_lm):
    requests = mixed_requests(100)
    batched = generate_many(tiny_lm, requests, rows=24)
    for request, result in zip(requests, batched):
        assert_same_run(result, alone(tiny_lm, request))


def test_any_number_of_rows_gives_the_same_runs(tiny_lm):
    requests = mixed_requests(20, seed=1)
    reference = [trace(r) for r in generate_many(tiny_lm, requests, rows=1)]
    for rows in (2, 7, MAX_ROWS):
        assert [trace(r) for r in generate_many(tiny_lm, requests, rows=rows)] == reference


def test_a_request_counts_the_forwards_it_took_part_in_alone_or_in_a_batch(tiny_lm):
    requests = [Request("direct", QUERIES[0], PREFS[:2], DecodeSettings(seed=1, max_new_tokens=12)),
                Request("persona-judge", QUERIES[1], PREFS[:3], DecodeSettings(seed=2, max_new_tokens=30))]
    together = generate_many(tiny_lm, requests, rows=2)
    for request, result in zip(requests, together):
        assert result.stats["forward_passes"] == alone(tiny_lm, request).stats["forward_passes"]
    assert together[0].stats["forward_passes"] == 12  # direct prompting: one forward per token
    assert together[0].stats["seconds"] > 0


def test_streaming_many_yields_each_requests_steps_in_order(tiny_lm):
    requests = mixed_requests(12, seed=2)
    batch = stream_many(tiny_lm, requests, rows=5)
    seen = {id(r): [] for r in requests}
    for request, step in batch:
        seen[id(request)].append(step.token_id)
    for request, result in zip(requests, batch.results):
        assert seen[id(request)] == result.token_ids


# --------------------------------------------------------------------------- the KV pool

def full_logits(lm, ids):
    with torch.no_grad():
        return lm.model(input_ids=torch.tensor([ids])).logits[0]


def test_pooled_rows_of_different_lengths_see_only_their_own_tokens(tiny_lm):
    pool = KVPool(tiny_lm.model, slots=1, capacity=4)  # tiny on purpose: slots and length must grow
    rnd = random.Random(0)
    seqs = [[rnd.randrange(3, 290) for _ in range(n)] for n in (5, 23, 11, 40)]
    slots = [pool.allocate() for _ in seqs]
    fed = [0] * len(seqs)
    for chunk in (3, 1, 7, 2, 30):  # ragged feeds, several rows per forward, some rows idle
        feeds, owners = [], []
        for i, seq in enumerate(seqs):
            if fed[i] < len(seq) and (i + chunk) % 3:
                take = seq[fed[i]:fed[i] + chunk]
                feeds.append(Feed(slots[i], take, keep=len(take)))
                owners.append(i)
        for i, logits in zip(owners, ModelRunner(tiny_lm.model, pool).forward(feeds)):
            end = fed[i] + len(logits)
            assert torch.allclose(logits, full_logits(tiny_lm, seqs[i][:end])[fed[i]:end], atol=1e-5)
            fed[i] = end
    assert pool.slots >= 4 and pool.capacity > 4 and max(fed) > 20


def test_a_rolled_back_row_overwrites_what_it_forgot(tiny_lm):
    pool = KVPool(tiny_lm.model)
    slot = pool.allocate()
    ModelRunner(tiny_lm.model, pool).forward([Feed(slot, [5, 6, 7, 8, 9])])
    pool.lengths[slot] = 3  # forget 8, 9
    logits = ModelRunner(tiny_lm.model, pool).forward([Feed(slot, [40, 41], keep=2)])[0]
    assert torch.allclose(logits, full_logits(tiny_lm, [5, 6, 7, 40, 41])[3:], atol=1e-5)


def test_feeds_of_similar_width_share_a_forward():
    assert cut_batches([1] * 8 + [6] * 8) == [(0, 16)]  # drafting and judging rows: padding is cheaper
    assert cut_batches([1] * 8 + [20] * 8) == [(0, 8), (8, 16)]  # than another forward, until it is not
    assert cut_batches([1, 1, 2, 2]) == [(0, 4)]
    assert cut_batches([1, 200], max_rows=4) == [(0, 1), (1, 2)]  # a prompt is not padded into a draft
    assert len(cut_batches([1] * 10, max_rows=4)) == 3
    assert plan_forwards([1, 6, 1, 6], [3, 0, 1, 2]) == [[1, 2, 3, 0]]  # few rows: one forward, in slot order
    widths, slots = [1] * 8 + [20] * 8, list(range(15, -1, -1))
    assert plan_forwards(widths, slots) == [list(range(7, -1, -1)), list(range(15, 7, -1))]


def test_cutting_only_where_the_width_changes_costs_what_trying_every_cut_costs():
    """`cut_batches` tries only the points where the width changes unless a limit can bind; the cost it
    finds is the cost of the full search over every point, with and without limits."""
    def cost(widths, batches):
        return sum((b - a) * widths[b - 1] + FORWARD_OVERHEAD for a, b in batches)

    def every_cut(widths, max_rows=None, max_positions=None):
        n = len(widths)
        best = [0.0] + [float("inf")] * n
        for j in range(1, n + 1):
            for i in range(j):
                rows = j - i
                if (max_rows and rows > max_rows) or (max_positions and rows > 1 and rows * widths[j - 1] > max_positions):
                    continue
                best[j] = min(best[j], best[i] + rows * widths[j - 1] + FORWARD_OVERHEAD)
        return best[n]

    rng = random.Random(0)
    for _ in range(300):
        widths = sorted(rng.choice([1, 1, 1, 2, 5, 6, 30, 90, 200]) for _ in range(rng.randint(1, 40)))
        limits = rng.choice([{}, {"max_rows": 8}, {"max_positions": 400}, {"max_rows": 50, "max_positions": 5000}])
        batches = cut_batches(widths, **limits)
        assert [a for a, _ in batches[1:]] == [b for _, b in batches[:-1]] and batches[-1][1] == len(widths)
        assert cost(widths, batches) == every_cut(widths, **limits)


# --------------------------------------------------------------------------- joining, leaving, failing

def test_rows_are_admitted_in_waves_and_a_finished_request_frees_its_rows(tiny_lm):
    engine = Engine(tiny_lm, rows=2)
    jobs = [engine.submit(r.job(tiny_lm)) for r in mixed_requests(6, seed=3)]
    most = 0
    for _ in engine.stream():
        most = max(most, len(engine.scheduler.running))
        assert engine.pool.used == sum(len(t.prompts) for t in engine.scheduler.running)
    assert most == 2 and all(t.state == "finished" for t in jobs) and engine.pool.used == 0


def judging_steps(engine: Engine, jobs, arrivals: dict[int, object]) -> dict:
    """Step `engine` until every job ends, submitting arrivals[n] (a job) before step n; returns
    {job index: the steps at which it fed a judging block (a feed asking for more than one logit)}."""
    judged: dict[int, set] = {}
    while arrivals or engine.busy:
        if engine.steps in arrivals:
            jobs.append(engine.submit(arrivals.pop(engine.steps)))
        step = engine.steps
        engine.step()
        for i, job in enumerate(jobs):
            if job.state == "running" and any(f.keep > 1 for f in job.feeds):
                judged.setdefault(i, set()).add(step + 1)  # the feed it will take part in next step
    return judged


def test_a_persona_judge_request_joins_when_the_running_ones_start_a_block_so_their_judges_share_steps(tiny_lm):
    first, late = (Request("persona-judge", QUERIES[i], PREFS[i:i + 2], DecodeSettings(seed=4, max_new_tokens=n, lam=3),
                           ignore_eos=True) for i, n in ((0, 60), (1, 30)))
    engine, jobs = Engine(tiny_lm, rows=8), []
    judged = judging_steps(engine, jobs, {0: first.job(tiny_lm), 2: late.job(tiny_lm)})
    assert jobs[0].joined == 0 and jobs[1].joined == 4  # arrived at step 2; the next block starts at 4
    full_blocks = set(sorted(judged[1])[:-2])  # (its last blocks may be cut short by its token budget)
    assert len(full_blocks) >= 5 and full_blocks <= judged[0]  # so the late one's judges share their steps
    for job, request in zip(jobs, (first, late)):
        assert trace(job.result) == trace(alone(tiny_lm, request))  # joining later changes no token


def test_requests_without_blocks_or_with_another_block_length_join_at_the_next_step(tiny_lm):
    pj = Request("persona-judge", QUERIES[0], PREFS[:2], DecodeSettings(seed=4, max_new_tokens=30, lam=3))
    others = [Request("direct", QUERIES[1], PREFS[:2], DecodeSettings(seed=5, max_new_tokens=20)),
              Request("fusion", QUERIES[2], PREFS[:2], DecodeSettings(seed=6, max_new_tokens=20)),
              Request("persona-judge", QUERIES[3], PREFS[1:3], DecodeSettings(seed=7, max_new_tokens=20, lam=5))]
    for other in others:
        engine, jobs = Engine(tiny_lm, rows=8), []
        judging_steps(engine, jobs, {0: pj.job(tiny_lm), 2: other.job(tiny_lm)})
        assert jobs[1].joined == 2
        assert trace(jobs[1].result) == trace(alone(tiny_lm, other))


def test_a_bad_request_is_refused_before_any_forward(tiny_lm):
    forwards = []
    hook = tiny_lm.model.get_decoder().register_forward_pre_hook(lambda *a: forwards.append(1))
    try:
        bad = Request("persona-judge", "Hi", PREFS[:1])  # one persona cannot judge itself
        with pytest.raises(InputError, match=r"Request 2 \(persona-judge\): .*two preferences"):
            generate_many(tiny_lm, [Request("direct", "Hi", PREFS[:2]), bad])
        tall = Request("direct", "word " * 600, PREFS[:2])
        with pytest.raises(InputError, match="context"):
            generate_many(tiny_lm, [tall])
    finally:
        hook.remove()
    assert forwards == []


@pytest.mark.parametrize("rows", [0, -1, MAX_ROWS + 1, 2.5, "8", True])
def test_rows_out_of_range_is_one_sentence(rows):
    with pytest.raises(InputError, match=f"from 1 to {MAX_ROWS}"):
        check_rows(rows)


def test_a_failing_decoder_fails_only_its_own_request(tiny_lm):
    engine = Engine(tiny_lm, rows=4)
    good = [engine.submit(r.job(tiny_lm)) for r in mixed_requests(3, seed=4)]
    broken = mixed_requests(1, seed=5)[0].job(tiny_lm)
    decoder = broken.make_decoder

    def failing(rows):
        yield next(decoder(rows))
        raise RuntimeError("boom")
    broken.make_decoder = failing
    bad = engine.submit(broken)
    engine.run()
    assert bad.state == "failed" and "boom" in str(bad.error)
    with pytest.raises(RuntimeError, match="boom"):
        list(bad)
    requests = mixed_requests(3, seed=4)
    for job, request in zip(good, requests):
        assert job.state == "finished" and trace(job.result) == trace(alone(tiny_lm, request))


# --------------------------------------------------------------------------- threads

def test_requests_submitted_and_read_from_other_threads_while_the_engine_thread_steps():
    lm = make_tiny_lm()
    requests = mixed_requests(8, seed=6)
    expected = [trace(alone(lm, r)) for r in requests]
    engine = Engine(lm, rows=3).start()
    got = [None] * len(requests)

    def visitor(i):
        job = engine.submit(requests[i].job(lm))
        steps = list(job)  # blocks until the engine's thread has decided every step
        assert [s.token_id for s in steps] == job.result.token_ids
        got[i] = trace(job.result)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    engine.close()
    assert got == expected


def test_cancelling_one_request_from_another_thread_leaves_the_others_untouched():
    lm = make_tiny_lm()
    long = Request("persona-judge", QUERIES[1], PREFS[:2], DecodeSettings(seed=9, max_new_tokens=400))
    others = mixed_requests(4, seed=7)
    engine = Engine(lm, rows=8).start()
    victim = engine.submit(long.job(lm))
    jobs = [engine.submit(r.job(lm)) for r in others]
    seen = []
    for step in victim:
        seen.append(step)
        if len(seen) == 5:
            threading.Thread(target=engine.cancel, args=(victim,)).start()
    results = [job.wait(timeout=120) for job in jobs]
    engine.close()
    assert victim.state == "cancelled" and victim.result is None and 5 <= len(seen) < 400
    for result, request in zip(results, others):
        assert result is not None and trace(result) == trace(alone(lm, request))
    assert engine.pool.used == 0


# --------------------------------------------------------------------------- forward turns

def test_forwards_from_several_threads_take_turns_and_a_failing_forward_hands_its_turn_on():
    from pjudge_core.ui.turns import install
    lm = make_tiny_lm()
    turns = install(lm)
    assert install(lm) is turns  # once per model
    inside, most, lock = [0], [0], threading.Lock()

    def count(delta):
        def hook(*args):
            with lock:
                inside[0] += delta
                most[0] = max(most[0], inside[0])
        return hook

    layer = lm.model.model.layers[0]  # inside the turn: a layer of the decoder stack
    hooks = [layer.register_forward_pre_hook(count(1)), layer.register_forward_hook(count(-1))]
    try:
        with pytest.raises(Exception):
            lm.model(input_ids=torch.tensor([[10**6]]))  # an id outside the vocabulary: the forward raises

        def work(seed):
            generate_many(lm, mixed_requests(3, seed=seed), rows=3)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)  # nobody waits for the turn of the failed forward
    finally:
        for hook in hooks:
            hook.remove()
        turns.remove()
    assert most[0] == 1  # never two forwards at once


def test_a_lab_run_on_a_shared_engine_stops_only_its_own_panels():
    from pjudge_core.ui import lab
    lm = make_tiny_lm()
    engine = Engine(lm, rows=8).start()
    settings = DecodeSettings(max_new_tokens=200, seed=4)
    specs = {slot: lab.slot_spec(slot) for slot in ("persona-judge", "direct")}
    mine = lab.LabRun(lm, QUERIES[0], PREFS[:2], specs, settings, engine=engine)
    theirs = lab.LabRun(lm, QUERIES[1], PREFS[:2], specs, settings.replace(max_new_tokens=30), engine=engine)
    for n, _ in enumerate(mine):
        if n == 6:
            break
    mine.close()
    list(theirs)
    assert theirs.done and all(p.result is not None for p in theirs.panels.values())
    for slot, spec in specs.items():
        assert theirs.panels[slot].result.token_ids == spec.run(lm, QUERIES[1], PREFS[:2],
                                                                settings.replace(max_new_tokens=30)).token_ids
    engine.close()
    assert all(p.job.state == "cancelled" and p.result is None for p in mine.panels.values())
    assert max(len(p.job.steps) for p in mine.panels.values()) < 200


def test_grouped_attention_gives_the_same_logits_as_transformers_sdpa():
    from pjudge_core.engine.attention import NAME, use_grouped_attention
    lm = make_tiny_lm()  # 4 query heads share 2 key/value heads
    ids = torch.randint(3, 290, (3, 17))
    mask = torch.ones(3, 17, dtype=torch.long)
    mask[0, :5] = 0  # a padded row: masked attention with several query positions
    with torch.no_grad():
        before = lm.model(input_ids=ids, attention_mask=mask).logits
        use_grouped_attention(lm.model)
        assert lm.model.config._attn_implementation == NAME
        after = lm.model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before[mask.bool()], after[mask.bool()])
