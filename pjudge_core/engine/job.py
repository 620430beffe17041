"""One request's state, from the moment it is prepared to its result (nano-vllm's `Sequence`).

A `Job` is made by `api.prepare` (validated, its prompts built; nothing decoded yet) and handed to
an `Engine` (`submit`). It holds, in one place: its prompts (one KV row each once admitted), its
decoder (a generator that yields a `kv.Feed`, or a list of them, where a batch-of-one decoder would
call the model, and receives the logits; or a `sampler` want, and receives the numbers it decides
with; and yields each `Step` as it decides a token), its `Trace`
(the steps, kept once), its block period and the KV memory its rows need (for admission), its
state, and the engine's figures for it: the forwards it took part in, its share of the machine, and its latency. When the decoder
returns, the job's `outcome()` is its `Result`.

Read from any thread: iterating a job blocks until steps arrive and ends with the request (raising
its error, if it failed); `wait()` returns the result. The engine's thread is the only writer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator

from .kv import Feed, Row
from .sampler import Want
from .trace import Result, Step, Trace

Decoder = Generator  # yields Feed | list[Feed] | Want | Step, receives logits or a want's answer

STATES = ("waiting", "running", "finished", "cancelled", "failed")
DONE = ("finished", "cancelled", "failed")


class Job:
    """A request for the engine (see the module docstring)."""

    def __init__(self, method: str, prompts: list[list[int]], decoder: Callable[[list[Row]], Decoder],
                 trace: Trace, period: int | None = None, max_new_tokens: int = 0, reproducible: bool = False):
        self.method = method
        self.prompts = prompts
        self.kv_tokens = max(map(len, prompts)) + max_new_tokens  # the longest any of its rows grows
        self.reproducible = reproducible  # its rows go through forwards of their own (`DecodeSettings`)
        self.make_decoder = decoder  # the decoder, given the rows of `prompts` in order
        self.trace = trace
        self.period = period  # steps per block of a block-wise decoder (Persona-judge: λ + 1), for admission
        self.listener: queue.Queue | None = None  # also receives (job, step), and (job, None) when it ends
        self.state = "waiting"
        self.joined = 0  # the engine step it was admitted at
        self.rows: list[Row] = []
        self.decoder: Decoder | None = None
        self.need: Feed | list[Feed] | Want | None = None  # what the decoder waits for: its next feed(s), or a want
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.forward_passes = 0  # the forwards it took part in
        self.compute_seconds = 0.0  # its share of the machine: each forward's time split among its rows, its sampling
        self.admitted_at: float | None = None
        self._changed = threading.Condition()

    @property
    def steps(self) -> list[Step]:
        return self.trace.steps

    @property
    def record(self) -> dict:
        """The run's description (`Trace.record`): what a `Stream` and the `Result` carry as settings."""
        return self.trace.record

    @property
    def done(self) -> bool:
        return self.state in DONE

    @property
    def feeds(self) -> list[Feed]:
        """The rows the decoder's next need feeds: a bare feed's, a list's, or a want's (`sampler`)."""
        need = self.need
        return [need] if isinstance(need, Feed) else need if isinstance(need, list) else need.feeds

    # ------------------------------------------------------------------ any thread
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

    # ------------------------------------------------------------------ the engine's thread
    def admit(self, rows: list[Row]) -> None:
        """Give the job its rows and start its decoder (its clock starts now, not while it waited)."""
        self.rows, self.admitted_at = rows, time.perf_counter()
        self.decoder = self.make_decoder(rows)

    def advance(self, logits) -> tuple[list[Step], bool]:
        """Send the decoder its logits and run it to its next feed: (the steps it decided on the way,
        whether it returned, i.e. the run is over and `outcome()` may be asked for)."""
        started = time.perf_counter()
        steps = []
        try:
            item = self.decoder.send(logits)
            while isinstance(item, Step):
                steps.append(item)
                self._emit(item)
                item = self.decoder.send(None)
            self.need = item
            return steps, False
        except StopIteration:
            self.need = None
            return steps, True
        finally:
            self.compute_seconds += time.perf_counter() - started

    def outcome(self) -> Result:
        """The finished run's `Result`, with the engine's figures for it."""
        return self.trace.result(self.prompts, seconds=time.perf_counter() - self.admitted_at,
                                 forward_passes=self.forward_passes, compute_seconds=self.compute_seconds)

    def stop(self) -> None:
        """Close the decoder (its cleanup runs); the caller ends the job."""
        self.need = None
        if self.decoder is not None:
            self.decoder.close()

    def _emit(self, step: Step) -> None:
        with self._changed:
            self._changed.notify_all()
        if self.listener is not None:
            self.listener.put((self, step))

    def end(self, state: str, result: Result | None = None, error: BaseException | None = None) -> None:
        with self._changed:
            self.state, self.result, self.error = state, result, error
            self._changed.notify_all()
        if self.listener is not None:
            self.listener.put((self, None))
