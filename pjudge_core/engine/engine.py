"""The batched engine: many requests decode together, sharing each forward.

Contract:
  * A `Task` is a request made ready by `methods.prepare`: its prompts (one row of the KV pool
    each), its `Recorder`, and its decoder, a generator that yields a `kv.Feed` (or a list of them)
    where a batch-of-one decoder would call the model, receives the logits, yields each `Step` as
    it decides a token and returns the `Result`. So the decoders still read like the paper's
    Algorithm 1; the engine decides which forward each feed goes into.
  * `Engine.submit(task)` (from any thread) queues it and returns its `Ticket`; `cancel(ticket)`
    (any thread) stops it at the next step and frees its rows. Requests are admitted in arrival
    order while fewer than `rows` run (waves); a request that finishes (end-of-sequence, budget)
    leaves at once. A block-wise request (a task with a `period`: Persona-judge's λ drafting
    steps and one judging step) joins at the step where most running requests of its period start
    a block, at most `period - 1` steps late, so that their judges keep sharing one forward.
  * `step()`: admit, take every running request's next feeds, group them into forwards
    (`scheduler.plan_forwards`: rows of similar width together, i.e. one forward per kind of
    work), run the forwards, hand each request its logits and run it to its next feed. Every
    running request advances by one feed per step, so rows may be out of phase (different λ,
    3-4 personas, one prefilling while others draft): the grouping is by width, not by phase.
  * Who steps: whoever calls `step()` or iterates `stream()` (one thread at a time: a lock), or the
    engine's own thread after `start()` (a long-lived engine shared by threads, e.g. an app's
    visitors). A ticket can be read from any thread: iterating it blocks until steps arrive.
  * Exactness: a request's random numbers depend only on its seed and output positions
    (`sampling.Uniforms`), and each row attends only to its own tokens (`kv`), so a request decodes
    the same tokens in any batch as alone; p and q differ from a lone run by float rounding only.
  * Failures: an exception inside a forward or a decoder fails the requests involved (their
    tickets carry the error, iterating them raises it); the others go on.
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
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from .kv import Feed, KVPool, Row, forward
from .scheduler import plan_forwards
from .trace import Recorder, Result, Step

DEFAULT_ROWS = 16  # requests decoding together unless told otherwise (see README, "Batched decoding")
MAX_ROWS = 64  # the most requests one engine decodes together: bounds the KV memory

Decoder = Generator  # yields Feed | list[Feed] | Step, receives logits, returns Result


@dataclass
class Task:
    """A validated request, ready to decode: its prompts (one row each), its decoder given the rows
    in that order, and the recorder that builds its `Result`."""

    method: str
    prompts: list[list[int]]
    decoder: Callable[[list[Row]], Decoder]
    recorder: Recorder
    period: int | None = None  # steps per block of a block-wise decoder (Persona-judge: λ + 1), for `_in_phase`


class Ticket:
    """A submitted task: its steps as they are decided, then its `result` (or `error`)."""

    def __init__(self, task: Task, listener: queue.Queue | None = None):
        self.task = task
        self.listener = listener  # also receives (ticket, step) and (ticket, None) at the end
        self.steps: list[Step] = []
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.state = "waiting"  # waiting | running | finished | cancelled | failed
        self.rows: list[Row] = []
        self.decoder: Decoder | None = None
        self.need: Feed | list[Feed] | None = None
        self.joined = 0  # the engine step it was admitted at
        self._changed = threading.Condition()

    @property
    def done(self) -> bool:
        return self.state in ("finished", "cancelled", "failed")

    def __iter__(self) -> Iterator[Step]:
        """Every step, waiting for new ones until the request is done (for a thread that does not step)."""
        seen = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: len(self.steps) > seen or self.done)
                new, done = self.steps[seen:], self.done
            yield from new
            seen += len(new)
            if done and seen == len(self.steps):
                if self.error is not None:
                    raise self.error
                return

    def wait(self, timeout: float | None = None) -> Result | None:
        with self._changed:
            self._changed.wait_for(lambda: self.done, timeout)
        if self.error is not None:
            raise self.error
        return self.result

    def _emit(self, step: Step) -> None:
        with self._changed:
            self.steps.append(step)
            self._changed.notify_all()
        if self.listener is not None:
            self.listener.put((self, step))

    def _end(self, state: str, result: Result | None = None, error: BaseException | None = None) -> None:
        with self._changed:
            self.state, self.result, self.error = state, result, error
            self._changed.notify_all()
        if self.listener is not None:
            self.listener.put((self, None))


class Engine:
    """Decodes many tasks together on one model (see the module docstring)."""

    def __init__(self, lm, rows: int = DEFAULT_ROWS):
        self.lm = lm
        self.rows = rows
        self.pool = KVPool(lm.model)
        self.waiting: deque[Ticket] = deque()
        self.running: list[Ticket] = []
        self.forwards = 0
        self.steps = 0
        self._cancelled: set[Ticket] = set()
        self._ended: list[Ticket] = []  # tickets that ended since the last step reported them
        self._lock = threading.Lock()  # guards waiting, running, _cancelled
        self._work = threading.Condition(self._lock)
        self._stepping = threading.Lock()  # one step at a time
        self._thread: threading.Thread | None = None
        self._closing = False

    # ------------------------------------------------------------------ any thread
    def submit(self, task: Task, listener: queue.Queue | None = None) -> Ticket:
        """Queue `task`; its ticket's steps also go to `listener` (one queue may serve several tickets)."""
        ticket = Ticket(task, listener)
        with self._work:
            if self._closing:
                raise RuntimeError("this engine is closed")
            self.waiting.append(ticket)
            self._work.notify_all()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        with self._work:
            if ticket in self.waiting:
                self.waiting.remove(ticket)
                self._ended.append(ticket)
                ticket._end("cancelled")
            elif not ticket.done:
                self._cancelled.add(ticket)
            self._work.notify_all()

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self.waiting or self.running)

    @property
    def threaded(self) -> bool:
        """True once `start()` has given the engine its own stepping thread."""
        return self._thread is not None

    @property
    def full(self) -> bool:
        """True while every row is taken (a waiting request then waits for a row, not for its phase)."""
        with self._lock:
            return len(self.running) >= self.rows

    def ahead_of(self, ticket: Ticket) -> int:
        """How many requests wait before `ticket` (0 once it runs)."""
        with self._lock:
            return self.waiting.index(ticket) if ticket in self.waiting else 0

    # ------------------------------------------------------------------ the stepping thread
    def step(self) -> list[tuple[Ticket, Step | None]]:
        """One step for every running request; returns the (ticket, step) pairs it decided, and
        (ticket, None) for each request that ended (finished, failed or cancelled)."""
        emitted: list[tuple[Ticket, Step | None]] = []
        with self._stepping:
            self._retire_cancelled()
            self._admit(emitted)
            running = [t for t in self.running if t.need is not None]
            feeds = [(t, f) for t in running for f in (t.need if isinstance(t.need, list) else [t.need])]
            logits: dict[int, object] = {}
            for group in plan_forwards([len(f.tokens) for _, f in feeds], [f.slot for _, f in feeds], self.rows * 5):
                owners = [feeds[i][0] for i in group]
                started = time.perf_counter()
                try:
                    out = forward(self.lm.model, self.pool, [feeds[i][1] for i in group])
                except Exception as exc:  # the requests in this forward fail; the others go on
                    for ticket in set(owners):
                        self._fail(ticket, exc)
                    continue
                share = (time.perf_counter() - started) / len(group)  # every row of a forward is as wide
                self.forwards += 1
                for ticket in set(owners):
                    ticket.task.recorder.forward_passes += 1
                for ticket in owners:
                    ticket.task.recorder.compute_seconds += share
                for i, value in zip(group, out):
                    logits[id(feeds[i][1])] = value
            for ticket in running:
                if ticket.done:
                    continue
                need = ticket.need
                value = ([logits[id(f)] for f in need] if isinstance(need, list) else logits[id(need)])
                self._advance(ticket, value, emitted)
            with self._lock:
                ended, self._ended = self._ended, []
            self.steps += 1
        return emitted + [(ticket, None) for ticket in ended]

    def stream(self) -> Iterator[tuple[Ticket, Step | None]]:
        """Step until nothing is waiting or running, yielding what `step` returns, pair by pair."""
        while self.busy:
            yield from self.step()

    def run(self) -> None:
        for _ in self.stream():
            pass

    def start(self) -> "Engine":
        """Step in the engine's own thread whenever there is work, until `close()`."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="pjudge-engine", daemon=True)
                self._thread.start()
        return self

    def close(self) -> None:
        """Cancel everything and stop the engine's thread (if any); the engine takes no more tasks."""
        with self._work:
            self._closing = True
            for ticket in list(self.waiting):
                self._ended.append(ticket)
                ticket._end("cancelled")
            self.waiting.clear()
            self._cancelled.update(self.running)
            self._work.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._stepping:
            self._retire_cancelled()

    # ------------------------------------------------------------------ internals (under _stepping)
    def _serve(self) -> None:
        while True:
            with self._work:
                self._work.wait_for(lambda: self._closing or self.waiting or self.running or self._cancelled)
                if self._closing:
                    return
            self.step()

    def _admit(self, emitted: list) -> None:
        while True:
            with self._lock:
                if not self.waiting or len(self.running) >= self.rows or not self._in_phase(self.waiting[0].task):
                    return
                ticket = self.waiting.popleft()
                self.running.append(ticket)
            ticket.state, ticket.joined = "running", self.steps
            ticket.rows = [Row(self.pool, self.pool.allocate(), prompt) for prompt in ticket.task.prompts]
            ticket.task.recorder.start()
            try:
                ticket.decoder = ticket.task.decoder(ticket.rows)
            except Exception as exc:
                self._fail(ticket, exc)
                continue
            self._advance(ticket, None, emitted)  # run it to its first feed

    def _in_phase(self, task: Task) -> bool:
        """Whether a block-wise task may join now: when no running request has its period, or when
        most of those that do start a block at this step. Why: rows out of phase judge in different
        steps, so nearly every step needs a narrow forward and a judging forward; in phase, four
        visitors' default runs decode 1.24x faster and eight 1.4x (`scripts/bench_phases.py`). The wait is at most
        `period - 1` steps, and a request's tokens do not depend on when it joins."""
        if not task.period:
            return True
        phases = Counter((self.steps - t.joined) % task.period for t in self.running if t.task.period == task.period)
        return not phases or phases[0] == max(phases.values())

    def _advance(self, ticket: Ticket, value, emitted: list) -> None:
        """Send the logits to the decoder and run it to its next feed, collecting the steps it decides."""
        started = time.perf_counter()
        try:
            item = ticket.decoder.send(value)
            while isinstance(item, Step):
                ticket._emit(item)
                emitted.append((ticket, item))
                item = ticket.decoder.send(None)
            ticket.need = item
            ticket.task.recorder.compute_seconds += time.perf_counter() - started
        except StopIteration as stop:
            ticket.task.recorder.compute_seconds += time.perf_counter() - started
            stop.value.stats["compute_seconds"] = ticket.task.recorder.compute_seconds  # its last sampling too
            self._leave(ticket)
            ticket._end("finished", result=stop.value)
        except Exception as exc:
            self._fail(ticket, exc)

    def _fail(self, ticket: Ticket, exc: BaseException) -> None:
        if ticket.decoder is not None:
            ticket.decoder.close()
        self._leave(ticket)
        ticket._end("failed", error=exc)

    def _leave(self, ticket: Ticket) -> None:
        ticket.need = None
        for row in ticket.rows:
            self.pool.release(row.slot)
        ticket.rows = []
        with self._lock:
            if ticket in self.running:
                self.running.remove(ticket)
            self._cancelled.discard(ticket)
            self._ended.append(ticket)

    def _retire_cancelled(self) -> None:
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
        for ticket in cancelled:
            if ticket.done:
                continue
            if ticket.decoder is not None:
                ticket.decoder.close()
            self._leave(ticket)
            ticket._end("cancelled")


def follow(engine: Engine, listener: queue.Queue, done: Callable[[], bool],
           heartbeat: float = 0.5) -> Iterator[list[tuple[Ticket, Step | None]]]:
    """What `listener` receives from `engine`, until `done()`, a list at a time: everything that
    arrived together ((ticket, step), and (ticket, None) when a ticket ends, as `Engine.step`
    returns them), usually one step's worth. A private engine (not `start`ed) is stepped here, by
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
