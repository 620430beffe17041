"""The batched engine: many requests decode together, sharing each forward.

Contract:
  * A request is a `job.Job` made ready by `api.prepare`: its prompts (one row of the KV pool
    each), its decoder (a generator that yields a `kv.Feed`, or a list of them, where a batch-of-one
    decoder would call the model, and receives the logits; or a `sampler` want, a draw or a judging
    over a feed, and receives the numbers it decides with; and yields each `Step` as it decides a
    token) and its `Trace`. So the decoders still read like the paper's Algorithm 1; the engine
    decides which forward each feed goes into, and serves every want of a step together.
  * `Engine.submit(job)` (from any thread) queues it; `cancel(job)` (any thread) stops it at the
    next step and frees its rows. Who joins when is the `scheduler.Scheduler`'s decision (waves of
    `rows` requests; a block-wise request joins in phase with the running ones).
  * `step()`: admit, take every running request's next feeds, group them into forwards
    (`scheduler.plan_forwards`: rows of similar width together, i.e. one forward per kind of
    work), run the forwards (`runner.ModelRunner`), serve the step's wants in one batch per kind of
    processing (`sampler.serve`: a constant number of host transfers per step, not per request),
    hand each request its logits or its answer and run it to its next feed. Every running request
    advances by one feed per step, so rows may be out of phase (different λ, 3-4 personas, one
    prefilling while others draft): the grouping is by width, not
    by phase. A reproducible request (`DecodeSettings.reproducible`) shares no forward: its feeds go
    through forwards of their own, grouped as when it decodes alone.
  * Who steps: whoever calls `step()` or iterates `stream()` (one thread at a time: a lock), or the
    engine's own thread after `start()` (a long-lived engine shared by threads, e.g. an app's
    visitors). A job can be read from any thread: iterating it blocks until steps arrive.
  * Exactness: a request's random numbers depend only on its seed and output positions
    (`sampling.Uniforms`), and each row attends only to its own tokens (`kv`), so a request's tokens
    are distributed in any batch as alone; p and q differ from a lone run by float rounding only,
    which the batch's shape changes (in float32 on this project's CPU, 100 mixed requests decode
    the very tokens of their lone runs; in bfloat16 a token at a near-tie may differ). A
    reproducible request decodes the very tokens of its lone run, in any dtype.
  * Memory: the KV pool has a budget (`memory.default_budget`: what the device has, or a setting).
    A request is admitted when its rows fit beside the running ones' (its prompt plus its budget of
    new tokens, `Job.kv_tokens`), and the pool grows for it then, so a request never grows the pool
    mid-run; one that could never fit is refused by `submit` with a sentence. The pool grows
    completely or not at all, and an idle pool shrinks back.
  * Failures: an exception inside a decoder fails its request; one inside a forward fails the
    requests in it (their jobs carry the error, iterating them raises it); the others go on. Out of
    memory is narrower: a forward that runs out is run again request by request, so only the
    requests that cannot fit fail, with one sentence (`errors.OutOfMemory`), and an admission that
    runs out fails only the request admitted. The engine's own thread survives anything a step
    raises (its running requests fail with it).
  * Stats: each request's `forward_passes` counts the forwards it took part in, its `seconds` run
    from admission to finish (latency), and its `compute_seconds` are its share of the machine:
    each forward's time split equally among its rows, plus the request's own sampling. Summed over
    requests they give the engine's busy time, so tokens / compute_seconds stays a throughput when
    requests share the wall clock.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import torch

from ..errors import InputError, OutOfMemory
from .job import Job
from .kv import Feed, KVPool, Row
from .memory import default_budget, is_out_of_memory
from .runner import ModelRunner
from .sampler import serve
from .scheduler import Scheduler, plan_forwards
from .trace import Step

DEFAULT_ROWS = 16  # requests decoding together unless told otherwise (docs/decoding.md, "Batched decoding")
MAX_ROWS = 64  # the most requests one engine decodes together: bounds the KV memory
# The most rows one request feeds in one step: fusion with four personas and no preference (ℓ₀).
# A forward takes at most `rows` times this many feeds, so one step's work of every request fits in it.
FEEDS_PER_REQUEST = 5

Event = tuple[Job, Step | None]  # a step a request decided, or (job, None) when it ended


class Engine:
    """Decodes many jobs together on one model (see the module docstring)."""

    def __init__(self, lm, rows: int = DEFAULT_ROWS, kv_budget: int | None = None):
        self.lm = lm
        budget = default_budget(lm.model.device) if kv_budget is None else kv_budget
        self.pool = KVPool(lm.model, budget=budget)
        self.runner = ModelRunner(lm.model, self.pool)
        self.scheduler = Scheduler(rows)
        self.forwards = 0
        self.steps = 0
        self._stepping = threading.Lock()  # one step at a time
        self._thread: threading.Thread | None = None

    @property
    def rows(self) -> int:
        return self.scheduler.rows

    # ------------------------------------------------------------------ any thread
    def submit(self, job: Job, listener: queue.Queue | None = None) -> Job:
        """Queue `job`; its steps also go to `listener` (one queue may serve several jobs). A job whose
        rows could never fit the KV budget is refused (`InputError`), before any forward."""
        rows, tokens = len(job.prompts), job.kv_tokens
        if not self.pool.ever_fits(rows, tokens):
            mib = 2 ** 20
            raise InputError(f"This request needs {self.pool.size(rows, tokens) / mib:,.0f} MiB of KV cache ({rows} "
                             f"rows of {tokens} tokens), more than this engine's budget of {self.pool.budget / mib:,.0f} "
                             "MiB; shorten the prompt or lower max new tokens.")
        job.listener = listener
        self.scheduler.submit(job)
        return job

    def cancel(self, job: Job) -> None:
        if self.scheduler.cancel(job):
            job.end("cancelled")

    @property
    def busy(self) -> bool:
        return self.scheduler.busy

    @property
    def threaded(self) -> bool:
        """True once `start()` has given the engine its own stepping thread."""
        return self._thread is not None

    @property
    def full(self) -> bool:
        return self.scheduler.full

    def ahead_of(self, job: Job) -> int:
        return self.scheduler.ahead_of(job)

    # ------------------------------------------------------------------ the stepping thread
    def step(self) -> list[Event]:
        """One step for every running request; returns the (job, step) pairs it decided, and
        (job, None) for each request that ended (finished, failed or cancelled)."""
        emitted: list[Event] = []
        with self._stepping:
            self._retire_cancelled()
            while (job := self.scheduler.admit(self.steps, self._fits)) is not None:
                self._start(job, emitted)
            running = [job for job in self.scheduler.running if job.need is not None]
            feeds = [(job, f) for job in running for f in job.feeds]
            logits: dict[int, torch.Tensor] = {}
            for group in self._plan(feeds):
                logits.update(self._forward(group))
            for job, answer in self._answers(running, logits):
                self._advance(job, answer, emitted)
            ended = self.scheduler.take_ended()
            self.steps += 1
        return emitted + [(job, None) for job in ended]

    def stream(self) -> Iterator[Event]:
        """Step until nothing is waiting or running, yielding what `step` returns, pair by pair."""
        while self.busy:
            yield from self.step()

    def run(self) -> None:
        for _ in self.stream():
            pass

    def start(self) -> "Engine":
        """Step in the engine's own thread whenever there is work, until `close()`."""
        with self.scheduler.lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="pjudge-engine", daemon=True)
                self._thread.start()
        return self

    def close(self) -> None:
        """Cancel everything and stop the engine's thread (if any); the engine takes no more jobs."""
        for job in self.scheduler.close():
            job.end("cancelled")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._stepping:
            self._retire_cancelled()

    # ------------------------------------------------------------------ internals (under _stepping)
    def _serve(self) -> None:
        scheduler = self.scheduler
        while True:
            with scheduler.changed:
                scheduler.changed.wait_for(scheduler.has_work)
                if scheduler.closing:
                    return
            try:
                self.step()
            except Exception as exc:  # a bug: the requests running now fail with it, and the engine serves on
                traceback.print_exc(file=sys.stderr)
                with self._stepping:
                    for job in list(scheduler.running):
                        if not job.done:
                            self._fail(job, exc)

    def _plan(self, feeds: list[tuple[Job, Feed]]) -> list[list[tuple[Job, Feed]]]:
        """The forwards of one step: the shared requests' feeds grouped by width (`plan_forwards`), and
        each reproducible request's feeds in forwards of their own, grouped as when it decodes alone."""
        def planned(some: list[tuple[Job, Feed]]) -> list[list[tuple[Job, Feed]]]:
            groups = plan_forwards([len(f.tokens) for _, f in some], [f.slot for _, f in some],
                                   self.rows * FEEDS_PER_REQUEST)
            return [[some[i] for i in group] for group in groups]

        alone = list(dict.fromkeys(job for job, _ in feeds if job.reproducible))
        shared = [(job, f) for job, f in feeds if not job.reproducible]
        return (planned(shared) if shared else []) + [g for job in alone for g in planned(
            [(j, f) for j, f in feeds if j is job])]

    def _fits(self, job: Job) -> bool:
        return self.pool.fits(len(job.prompts), job.kv_tokens)

    def _start(self, job: Job, emitted: list) -> None:
        """An admitted job: the pool grown for its rows, its rows, its decoder run to its first feed."""
        try:
            self.pool.reserve(len(job.prompts), job.kv_tokens)
            job.rows = []  # each row as it is allocated, so that a failure releases what was
            for prompt in job.prompts:
                job.rows.append(Row(self.pool, self.pool.allocate(), prompt))
            job.admit(job.rows)
        except Exception as exc:
            self._fail(job, _failure(exc))
            return
        self._advance(job, None, emitted)

    def _forward(self, feeds: list[tuple[Job, Feed]]) -> dict[int, torch.Tensor]:
        """One forward over `feeds`: {id(feed): its logits}. If it runs out of memory, each request's feeds
        go again in a forward of their own, so that only the requests that cannot fit fail; any other
        error fails every request in it."""
        owners = list(dict.fromkeys(job for job, _ in feeds))
        started = time.perf_counter()
        try:
            out = self.runner.forward([f for _, f in feeds])
        except Exception as exc:
            if is_out_of_memory(exc) and len(owners) > 1:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                logits: dict[int, torch.Tensor] = {}
                for owner in owners:
                    logits.update(self._forward([(job, f) for job, f in feeds if job is owner]))
                return logits
            for job in owners:
                self._fail(job, _failure(exc))
            return {}
        share = (time.perf_counter() - started) / len(feeds)  # every row of a forward is as wide
        self.forwards += 1
        for job in owners:
            job.forward_passes += 1
        for job, _ in feeds:
            job.compute_seconds += share
        return {id(f): value for (_, f), value in zip(feeds, out)}

    def _answers(self, running: list[Job], logits: dict[int, torch.Tensor]) -> list[tuple[Job, object]]:
        """What each running job's decoder is sent: its feeds' logits, or its want's answer, every want of
        the step served together (`sampler.serve`; its time is split among them). If serving them together
        fails, each is served alone, so that only the request that caused it fails."""
        jobs = [job for job in running if not job.done]  # (a failed forward ended some)
        wants = [job for job in jobs if not isinstance(job.need, Feed | list)]
        answers = {id(job): logits[id(job.need)] if isinstance(job.need, Feed) else [logits[id(f)] for f in job.need]
                   for job in jobs if job not in wants}
        if wants:
            started = time.perf_counter()
            asked = [(job.need, [logits[id(f)] for f in job.need.feeds]) for job in wants]
            try:
                served = serve(asked)
            except Exception:
                served = []
                for job, one in zip(wants, asked):
                    try:
                        served += serve([one])
                    except Exception as exc:
                        self._fail(job, _failure(exc))
                        served.append(None)
            share = (time.perf_counter() - started) / len(wants)
            for job, answer in zip(wants, served):
                job.compute_seconds += share
                answers[id(job)] = answer
        return [(job, answers[id(job)]) for job in jobs if not job.done]

    def _advance(self, job: Job, logits, emitted: list) -> None:
        """Send the logits to the decoder and run it to its next feed, collecting the steps it decides."""
        try:
            steps, returned = job.advance(logits)
        except Exception as exc:
            self._fail(job, exc)
            return
        emitted += [(job, step) for step in steps]
        if returned:
            self._leave(job)
            job.end("finished", result=job.outcome())

    def _fail(self, job: Job, exc: BaseException) -> None:
        job.stop()
        self._leave(job)
        job.end("failed", error=exc)

    def _leave(self, job: Job) -> None:
        for row in job.rows:
            self.pool.release(row.slot)
        job.rows = []
        self.scheduler.leave(job)

    def _retire_cancelled(self) -> None:
        for job in self.scheduler.take_cancelled():
            if job.done:
                continue
            job.stop()
            self._leave(job)
            job.end("cancelled")


def _failure(exc: BaseException) -> BaseException:
    """What a failed request carries: out of memory as the one sentence `errors.OutOfMemory` says, any
    other error as it is."""
    return OutOfMemory() if is_out_of_memory(exc) else exc


def follow(engine: Engine, listener: queue.Queue, done: Callable[[], bool],
           heartbeat: float = 0.5) -> Iterator[list[Event]]:
    """What `listener` receives from `engine`, until `done()`, a list at a time: everything that
    arrived together ((job, step), and (job, None) when a job ends, as `Engine.step` returns
    them), usually one step's worth. A private engine (not `start`ed) is stepped here, by
    whoever iterates; with a started one this waits for its thread and yields an empty list about
    every `heartbeat` seconds while nothing arrives (a caller can then report a wait, or stop)."""
    while not done():
        if not engine.threaded and listener.empty():
            engine.step()
            continue
        try:
            events = [listener.get(timeout=heartbeat)]
        except queue.Empty:
            yield []
            continue
        while True:
            try:
                events.append(listener.get_nowait())
            except queue.Empty:
                break
        yield events
