"""One model, several threads: their forwards take turns, first come, first served.

A shared app runs the batched engine in its own thread while visitors' handlers score answers
(persona fit), infer personas or measure judge capacity in theirs, all on the same weights. Two
forwards at once would each spread over every core and slow both (and the decoding steps of
everybody); one forward at a time, in arrival order, keeps the engine stepping between a scorer's
forwards, so a long scoring job delays each decoding step by at most one of its forwards instead of
stopping decoding until it ends.

`ForwardTurns(lm)` hooks the model's decoder stack: every forward, from any thread and any code
(the engine, the prefix-tree scorer, transformers' own `generate`), waits for its turn before it
starts and hands the turn on when it ends, also when it raises. `install(lm)` does it once per
model.

`in_own_thread(fn)` / `in_own_threads(generator)`: model work that a long-lived request thread
would do runs in a short-lived thread instead, so that torch's OpenMP does not slow the engine's
forwards (why: `in_own_thread`'s docstring). The app's model handlers run this way (`served`).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

_INSTALLED = "_pjudge_forward_turns"


class ForwardTurns:
    """A ticket lock around every forward of one module (see the module docstring)."""

    def __init__(self, module):
        self._changed = threading.Condition()
        self._issued = 0  # turns handed out
        self._serving = 0  # the turn allowed to run
        self._owner = threading.local()  # a thread already inside a forward runs nested calls at once
        self._hooks = (module.register_forward_pre_hook(self._enter),
                       module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module, args) -> None:
        depth = getattr(self._owner, "depth", 0)
        self._owner.depth = depth + 1
        if depth:
            return
        with self._changed:
            turn = self._issued
            self._issued += 1
            self._changed.wait_for(lambda: self._serving == turn)

    def _leave(self, module, args, output) -> None:
        self._owner.depth -= 1
        if self._owner.depth:
            return
        with self._changed:
            self._serving += 1
            self._changed.notify_all()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def install(lm) -> ForwardTurns:
    """The model's `ForwardTurns`, installed on its decoder stack the first time."""
    model = lm.model
    turns = getattr(model, _INSTALLED, None)
    if turns is None:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        turns = ForwardTurns(decoder)
        setattr(model, _INSTALLED, turns)
    return turns


def in_own_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """`fn(*args, **kwargs)` run in a new thread that ends when it returns (with the caller's
    context variables, so a web framework's request context goes along); its result or exception.

    Why: libgomp (torch's OpenMP on Linux) gives every thread that runs a parallel region a team of
    worker threads, kept until that thread exits. Once the live teams hold more threads than the
    machine has cores, libgomp throttles every worker to ~100 spins before it sleeps (instead of
    ~300,000), so each parallel region of every forward wakes its workers through the kernel. A
    request thread that stays alive in a server's worker pool after it loaded the model or scored
    an answer thus slows every later forward of the engine's own thread (`scripts/bench_threads.py`:
    a visitor's run half as slow again, and the engine thread switching context an order of
    magnitude more often; docs/benchmarks.md). Model work a request thread would do goes through
    here instead, and its team goes when the work ends.
    """
    box: dict = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            box["value"] = context.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"pjudge-{getattr(fn, '__name__', 'call')}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def in_own_threads(items: Generator[T, None, None]) -> Iterator[T]:
    """A generator advanced (and closed) by `in_own_thread`: each item is computed in a new thread."""
    try:
        while True:
            try:
                item = in_own_thread(next, items)
            except StopIteration:
                return
            yield item
    finally:
        in_own_thread(items.close)
