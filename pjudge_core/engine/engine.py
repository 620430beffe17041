"""The batched engine: many requests decode together, sharing each forward.

Contract:
  * A request is a `job.Job` made ready by `api.prepare`: its prompts (one row of the KV pool
    each), its decoder (a generator that yields a `kv.Feed`, or a list of them, where a batch-of-one
    decoder would call the model, receives the logits, and yields each `Step` as it decides a token)
    and its `Trace`. So the decoders still read like the paper's Algorithm 1; the engine decides
    which forward each feed goes into.
  * `Engine.submit(job)` (from any thread) queues it; `cancel(job)` (any thread) stops it at the
    next step and frees its rows. Who joins when is the `scheduler.Scheduler`'s decision (waves of
    `rows` requests; a block-wise request joins in phase with the running ones).
  * `step()`: admit, take every running request's next feeds, group them into forwards
    (`scheduler.plan_forwards`: rows of similar width together, i.e. one forward per kind of
    work), run the forwards (`runner.ModelRunner`), hand each request its logits and run it to its
    next feed. Every running request advances by one feed per step, so rows may be out of phase
    (different λ, 3-4 personas, one prefilling while others draft): the grouping is by width, not
    by phase.
  * Who steps: whoever calls `step()` or iterates `stream()` (one thread at a time: a lock), or the
    engine's own thread after `start()` (a long-lived engine shared by threads, e.g. an app's
    visitors). A job can be read from any thread: iterating it blocks until steps arrive.
  * Exactness: a request's random numbers depend only on its seed and output positions
    (`sampling.Uniforms`), and each row attends only to its own tokens (`kv`), so a request decodes
    the same tokens in any batch as alone; p and q differ from a lone run by float rounding only.
  * Failures: an exception inside a forward or a decoder fails the requests involved (their jobs
    carry the error, iterating them raises it); the others go on.
  * Stats: each request's `forward_passes` counts the forwards it took part in, its `seconds` run
    from admission to finish (latency), and its `compute_seconds` are its share of the machine:
    each forward's time split equally among its rows, plus the request's own sampling. Summed over
    requests they give the engine's busy time, so tokens / compute_seconds stays a throughput when
    requests share the wall clock.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from .job import Job
from .kv import KVPool, Row
from .runner import ModelRunner
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

    def __init__(self, lm, rows: int = DEFAULT_ROWS):
        self.lm = lm
        self.pool = KVPool(lm.model)
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
        """Queue `job`; its steps also go to `listener` (one queue may serve several jobs)."""
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
            for job in self.scheduler.admit(self.steps):
                self._start(job, emitted)
            running = [job for job in self.scheduler.running if job.need is not None]
            feeds = [(job, f) for job in running for f in (job.need if isinstance(job.need, list) else [job.need])]
            logits: dict[int, object] = {}
            groups = plan_forwards([len(f.tokens) for _, f in feeds], [f.slot for _, f in feeds],
                                   self.rows * FEEDS_PER_REQUEST)
            for group in groups:
                owners = [feeds[i][0] for i in group]
                started = time.perf_counter()
                try:
                    out = self.runner.forward([feeds[i][1] for i in group])
                except Exception as exc:  # the requests in this forward fail; the others go on
                    for job in set(owners):
                        self._fail(job, exc)
                    continue
                share = (time.perf_counter() - started) / len(group)  # every row of a forward is as wide
                self.forwards += 1
                for job in set(owners):
                    job.forward_passes += 1
                for job in owners:
                    job.compute_seconds += share
                for i, value in zip(group, out):
                    logits[id(feeds[i][1])] = value
            for job in running:
                if not job.done:
                    need = job.need
                    self._advance(job, [logits[id(f)] for f in need] if isinstance(need, list) else logits[id(need)],
                                  emitted)
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
            self.step()

    def _start(self, job: Job, emitted: list) -> None:
        """An admitted job: its rows, its decoder, run to its first feed."""
        try:
            job.admit([Row(self.pool, self.pool.allocate(), prompt) for prompt in job.prompts])
        except Exception as exc:
            self._fail(job, exc)
            return
        self._advance(job, None, emitted)

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
