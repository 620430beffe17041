"""Who runs, and which rows share a forward.

`Scheduler` holds the requests (`job.Job`) that wait and those that run, from any thread (a lock):
requests are admitted in arrival order while fewer than `rows` run (waves) and the KV pool can hold
their rows beside the others' (`kv.KVPool.fits`, the engine's test); a block-wise request (a job
with a `period`: Persona-judge's λ drafting steps and one judging step) joins at the step where most
running requests of its period start a block, at most `period - 1` steps late, so that their judges
keep sharing one forward (`in_phase`). A cancelled request leaves at the next step.

`plan_forwards` groups one step's feeds into forwards: feeds of similar width together, cut where
padding costs more than a forward. A forward's cost on this project's CPU is roughly a fixed part
(every weight streamed from memory) plus a part per position fed, padding included. Rows that feed
one token (drafting, direct prompting, fusion) and rows that judge a block of λ drafts, or feed a
whole prompt, would pad each other; `cut_batches` sorts the widths and cuts them into consecutive
groups that minimise Σ (rows × widest + `FORWARD_OVERHEAD`), which in practice is one forward per
kind of work: every one-token row together, every judging row together, prompts apart.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence

from .job import Job

# What one more forward costs, in padded positions: measured with SmolLM2-135M in float32 on this
# project's 2-core CPU, a forward's fixed cost is worth ~48 positions (docs/benchmarks.md).
FORWARD_OVERHEAD = 48
MAX_POSITIONS = 8192  # positions in one forward: bounds the activations of batched prompts


def cut_batches(widths: Sequence[int], overhead: float = FORWARD_OVERHEAD, max_rows: int | None = None,
                max_positions: int | None = None) -> list[tuple[int, int]]:
    """[(start, end)] cutting `widths` (sorted ascending) into consecutive batches at the points that
    minimise Σ (rows × widest + overhead), each batch at most `max_rows` rows and (unless it is a
    single row) at most `max_positions` padded positions."""
    n = len(widths)
    # Without limits an optimum never cuts between equal widths (the wider batch's first rows, as wide as
    # the narrower batch's widest, cost no more there), so only the points where the width changes are
    # candidates: a step's many one-token rows are one run, not one candidate each. When a limit can bind (everything in one batch would break it), every
    # point is a candidate.
    binds = n and ((max_rows is not None and n > max_rows)
                   or (max_positions is not None and n > 1 and n * max(widths) > max_positions))
    points = range(n + 1) if binds else [0] + [j for j in range(1, n) if widths[j] != widths[j - 1]] + [n]
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in points[1:]:
        for i in points:
            if i >= j:
                break
            if max_rows is not None and j - i > max_rows:
                continue
            rows = j - i
            if max_positions is not None and rows > 1 and rows * widths[j - 1] > max_positions:
                continue
            cost = best[i] + rows * widths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j:
        batches.append((cut[j], j))
        j = cut[j]
    return batches[::-1]


def plan_forwards(widths: Sequence[int], slots: Sequence[int], max_rows: int | None = None) -> list[list[int]]:
    """Indices of the feeds of each forward (feed i is `widths[i]` tokens wide, in slot `slots[i]`);
    within a forward the rows are in slot order, so consecutive slots are read without a copy."""
    order = sorted(range(len(widths)), key=lambda i: (widths[i], slots[i]))
    batches = cut_batches([widths[i] for i in order], max_rows=max_rows, max_positions=MAX_POSITIONS)
    return [sorted(order[a:b], key=lambda i: slots[i]) for a, b in batches]


class Scheduler:
    """The waiting and running requests of one engine (see the module docstring)."""

    def __init__(self, rows: int):
        self.rows = rows  # requests decoding at once
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []
        self.cancelled: set[Job] = set()  # running requests to stop at the next step
        self.ended: list[Job] = []  # requests that ended since the last step reported them
        self.closing = False
        self.lock = threading.Lock()  # guards every list above
        self.changed = threading.Condition(self.lock)  # wakes an engine's own thread when work arrives

    def submit(self, job: Job) -> None:
        with self.changed:
            if self.closing:
                raise RuntimeError("this engine is closed")
            self.waiting.append(job)
            self.changed.notify_all()

    def cancel(self, job: Job) -> bool:
        """Stop `job`: True when it was still waiting (it is out now, and has not run); a running one
        is stopped at the next step (`take_cancelled`)."""
        with self.changed:
            self.changed.notify_all()
            if job in self.waiting:
                self.waiting.remove(job)
                self.ended.append(job)
                return True
            if not job.done:
                self.cancelled.add(job)
            return False

    def close(self) -> list[Job]:
        """Take no more requests; every waiting one is out (returned) and every running one cancelled."""
        with self.changed:
            self.closing = True
            waiting = list(self.waiting)
            self.waiting.clear()
            self.ended += waiting
            self.cancelled.update(self.running)
            self.changed.notify_all()
        return waiting

    def admit(self, step: int, fits: Callable[[Job], bool] = lambda job: True) -> Job | None:
        """The next waiting request, if it joins at engine step `step` (then counted as running): a
        row is free, it is in phase, and `fits(job)` (its KV memory) holds. Arrival order: a request
        that cannot join yet keeps the ones behind it waiting too."""
        with self.lock:
            if not self.waiting or len(self.running) >= self.rows:
                return None
            job = self.waiting[0]
            if not self.in_phase(job, step) or not fits(job):
                return None
            self.waiting.popleft()
            job.state, job.joined = "running", step
            self.running.append(job)
            return job

    def in_phase(self, job: Job, step: int) -> bool:
        """Whether a block-wise request may join at `step`: when no running request has its period, or
        when most of those that do start a block there. Why: rows out of phase judge in different
        steps, so nearly every step needs a narrow forward and a judging forward; in phase, visitors'
        default runs decode faster (`scripts/bench_phases.py`, docs/benchmarks.md). The wait is at
        most `period - 1` steps, and a request's tokens do not depend on when it joins."""
        if not job.period:
            return True
        phases = Counter((step - j.joined) % job.period for j in self.running if j.period == job.period)
        return not phases or phases[0] == max(phases.values())

    def leave(self, job: Job) -> None:
        """A running request is over (finished, failed or cancelled)."""
        with self.lock:
            if job in self.running:
                self.running.remove(job)
            self.cancelled.discard(job)
            self.ended.append(job)

    def take_cancelled(self) -> set[Job]:
        with self.lock:
            cancelled, self.cancelled = self.cancelled, set()
        return cancelled

    def take_ended(self) -> list[Job]:
        with self.lock:
            ended, self.ended = self.ended, []
        return ended

    @property
    def busy(self) -> bool:
        with self.lock:
            return bool(self.waiting or self.running)

    @property
    def full(self) -> bool:
        """True while every row is taken (a waiting request then waits for a row, not for its phase)."""
        with self.lock:
            return len(self.running) >= self.rows

    def ahead_of(self, job: Job) -> int:
        """How many requests wait before `job` (0 once it runs)."""
        with self.lock:
            return self.waiting.index(job) if job in self.waiting else 0

    def has_work(self) -> bool:
        """For an engine's own thread: something to do (or it should stop). Under `changed`."""
        return bool(self.closing or self.waiting or self.running or self.cancelled)
