"""Memory: the KV pool's budget, and running out of memory on a started engine shared by several
requests. Faults are injected where memory is taken (a slot, a longer capacity, a forward): the
engine's thread stays alive, only the request that caused it fails, with one sentence, the others
finish with the tokens of their lone runs, the pool is left as it was, and a later request runs."""

from __future__ import annotations

import pytest
import torch

from pjudge_core import DecodeSettings, InputError, Request
from pjudge_core.engine.api import stream_job
from pjudge_core.engine.engine import Engine
from pjudge_core.engine.memory import is_out_of_memory
from pjudge_core.errors import OUT_OF_MEMORY, OutOfMemory

QUERY, PREFS = "Describe a sunset over the sea.", ["Be concise.", "Be imaginative."]
LONG_QUERY = "Describe the sea at night, the moon and the waves. " * 3  # with 200 new tokens: past 256


def request(seed: int, spec: str = "persona-judge", query: str = QUERY, tokens: int = 24) -> Request:
    return Request(spec, query, PREFS, DecodeSettings(seed=seed, max_new_tokens=tokens), ignore_eos=True)


def trace(result):
    return [(s.token_id, s.decision, s.drafter) for s in result.steps]


def lone(lm, req: Request):
    return trace(stream_job(lm, req.job(lm)).run())


def oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def finish(engine, jobs, timeout=120):
    for job in jobs:
        try:
            job.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 (the failing one: checked by the caller)
            pass


def test_out_of_memory_is_told_apart_from_other_errors():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("x"))


def test_a_request_whose_slots_cannot_be_allocated_fails_alone(tiny_lm, monkeypatch):
    engine = Engine(tiny_lm, rows=8).start()
    try:
        first, second = engine.submit(request(1).job(tiny_lm)), engine.submit(request(2).job(tiny_lm))
        while first.state == "waiting" or second.state == "waiting":  # four rows: the pool's first slots
            first.wait(0.01)
        slots, grow = engine.pool.slots, engine.pool._grow
        monkeypatch.setattr(engine.pool, "_grow", oom)  # the third request's two rows need more slots
        third = engine.submit(request(3).job(tiny_lm))
        with pytest.raises(OutOfMemory, match="ran out of memory"):
            third.wait(timeout=60)
        assert str(third.error) == OUT_OF_MEMORY and engine.pool.slots == slots
        monkeypatch.setattr(engine.pool, "_grow", grow)
        fourth = engine.submit(request(4).job(tiny_lm))
        finish(engine, [first, second, fourth])
        assert engine._thread.is_alive()
        for job, seed in ((first, 1), (second, 2), (fourth, 4)):
            assert job.state == "finished" and trace(job.result) == lone(tiny_lm, request(seed))
    finally:
        engine.close()


def test_a_request_whose_longer_capacity_cannot_be_allocated_fails_alone(tiny_lm, monkeypatch):
    engine = Engine(tiny_lm, rows=8).start()
    try:
        first = engine.submit(request(1, tokens=40).job(tiny_lm))
        first.wait(0.2)
        capacity, grow = engine.pool.capacity, engine.pool._grow

        def no_longer(slots=None, capacity=None):
            if capacity is not None and capacity > engine.pool.capacity:
                oom()
            grow(slots=slots, capacity=capacity)

        monkeypatch.setattr(engine.pool, "_grow", no_longer)
        long = engine.submit(request(2, query=LONG_QUERY, tokens=200).job(tiny_lm))  # beyond the capacity
        short = engine.submit(request(3, spec="direct").job(tiny_lm))
        with pytest.raises(OutOfMemory):
            long.wait(timeout=60)
        finish(engine, [first, short])
        assert engine.pool.capacity == capacity or engine.pool.used == 0  # (an idle pool shrinks back)
        assert trace(first.result) == lone(tiny_lm, request(1, tokens=40))
        assert trace(short.result) == lone(tiny_lm, request(3, spec="direct"))
        assert engine._thread.is_alive()
    finally:
        engine.close()


def test_a_forward_that_runs_out_of_memory_fails_only_the_request_that_cannot_fit(tiny_lm, monkeypatch):
    engine = Engine(tiny_lm, rows=8)
    requests = [request(seed) for seed in (1, 2, 3)] + [request(4, spec="direct")]
    jobs = [engine.submit(r.job(tiny_lm)) for r in requests]
    victim = jobs[1]
    forward, shared = engine.runner.forward, []

    def failing(feeds):
        slots = {row.slot for row in victim.rows}
        if slots & {f.slot for f in feeds} and len(victim.steps) >= 5:  # mid-run, in a forward with others
            shared.append(len({f.slot for f in feeds} - slots) > 0)
            oom()
        return forward(feeds)

    monkeypatch.setattr(engine.runner, "forward", failing)
    engine.start()
    try:
        finish(engine, jobs)
        assert any(shared), "the victim's rows never shared a forward: the test proved nothing"
        assert victim.state == "failed" and str(victim.error) == OUT_OF_MEMORY and len(victim.steps) >= 5
        for job, req in zip(jobs, requests):
            if job is not victim:
                assert job.state == "finished" and trace(job.result) == lone(tiny_lm, req)
        monkeypatch.setattr(engine.runner, "forward", forward)
        again = engine.submit(request(2).job(tiny_lm))  # the victim's request, once memory is back
        assert trace(again.wait(timeout=60)) == lone(tiny_lm, request(2)) and engine._thread.is_alive()
    finally:
        engine.close()


def test_the_engines_thread_survives_a_step_that_raises(tiny_lm, monkeypatch):
    engine = Engine(tiny_lm, rows=4).start()
    try:
        calls = []

        def broken(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("a bug in admission")

        monkeypatch.setattr(engine.scheduler, "admit", broken)
        job = engine.submit(request(1).job(tiny_lm))
        while not calls:
            job.wait(0.01)
        monkeypatch.undo()
        engine.cancel(job)
        later = engine.submit(request(2).job(tiny_lm))
        assert trace(later.wait(timeout=60)) == lone(tiny_lm, request(2)) and engine._thread.is_alive()
    finally:
        engine.close()


# --------------------------------------------------------------------------- the budget

def test_a_request_that_could_never_fit_is_refused_before_any_forward(tiny_lm):
    engine = Engine(tiny_lm, rows=4, kv_budget=engine_bytes(tiny_lm, slots=4, tokens=256))
    with pytest.raises(InputError, match=r"needs .* MiB of KV cache \(2 rows of \d+ tokens\), more than this engine"):
        engine.submit(request(1, tokens=400).job(tiny_lm))
    assert engine.forwards == 0 and not engine.busy


def engine_bytes(lm, slots: int, tokens: int) -> int:
    return Engine(lm).pool.size(slots, tokens)


def test_requests_wait_for_memory_and_the_pool_never_exceeds_its_budget(tiny_lm):
    budget = engine_bytes(tiny_lm, slots=4, tokens=256)  # two Persona-judge requests' rows at once
    engine = Engine(tiny_lm, rows=8, kv_budget=budget)
    requests = [request(seed, tokens=16) for seed in range(4)]
    jobs = [engine.submit(r.job(tiny_lm)) for r in requests]
    most = 0
    while engine.busy:
        engine.step()
        assert engine.pool.nbytes() <= budget
        most = max(most, len(engine.scheduler.running))
    assert most == 2  # rows were free for all four, memory for two
    for job, req in zip(jobs, requests):
        assert trace(job.result) == lone(tiny_lm, req)
    assert (engine.pool.slots, engine.pool.capacity) == engine.pool.initial and engine.pool.nbytes() == 0


def test_an_idle_pool_gives_its_memory_back(tiny_lm):
    engine = Engine(tiny_lm, rows=8)
    jobs = [engine.submit(request(seed, query=LONG_QUERY, tokens=200).job(tiny_lm)) for seed in range(3)]
    grown = 0
    while engine.busy:
        engine.step()
        grown = max(grown, engine.pool.nbytes())
    assert all(job.state == "finished" for job in jobs)
    assert grown > engine.pool.size(*engine.pool.initial) and engine.pool.nbytes() == 0
