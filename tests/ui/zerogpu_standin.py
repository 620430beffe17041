"""A stand-in for ZeroGPU's process model, on CPU, for the tests: `StandIn().GPU(fn, duration=...)`
wraps a handler the way `spaces.GPU` does on a ZeroGPU Space (spaces 0.51, `zero/wrappers.py`):

  * the duration is asked first, by calling `duration` with the call's own arguments;
  * every call runs in a process forked from this one, which exits when the call ends: nothing the
    call creates is kept for the next (ZeroGPU may reuse an idle worker; an app cannot count on it);
  * the arguments travel pickled (sent after the fork, not inherited); each yield or return value
    comes back pickled; progress and gr.Info/Warning are relayed to this process's queue;
  * Stop (the generator closed here) sets a stop flag the call sees after its next yield;
  * a `gr.Error` crosses as it is; any other exception becomes a generic "ZeroGPU worker error"
    naming only the exception's class;
  * a call still running when its duration is over is killed ("GPU task aborted").

`calls` records each call (handler name, asked seconds, fork time, pid, outcome) for the tests.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import inspect
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import gradio as gr
from gradio.context import LocalContext
from gradio.helpers import TrackedIterable
from gradio.queueing import Queue

FORK = multiprocessing.get_context("fork")
RELAYED = ("set_progress", "log_message")  # what spaces relays from a call to the main process's queue


@dataclass
class Call:
    name: str
    asked: float
    forked_at: float = 0.0  # time.monotonic()
    pid: int | None = None
    outcome: str = "running"  # "ok" | "error:<class>" | "aborted" | "stopped"
    messages: list = field(default_factory=list)


def _plain(iterables):
    """Progress units without their iterators (not picklable; spaces drops them too)."""
    return [TrackedIterable(None, it.index, it.length, it.desc, it.unit, None, it.progress) for it in iterables or []]


def _stacks_file(pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"zerogpu-standin-{pid}.txt")


def _child(fn, conn, stop, context, asked):
    """The call's process: read the arguments, run, send every value back, exit."""
    stacks = open(_stacks_file(os.getpid()), "w")  # noqa: SIM115
    faulthandler.dump_traceback_later(max(0.5, asked - 0.5), exit=False, file=stacks)  # where it was, if killed
    args, kwargs = conn.recv()
    blocks, event_id = context
    LocalContext.blocks.set(blocks)
    LocalContext.event_id.set(event_id)

    def relay(name):
        def method(self, *a, **k):
            if name == "set_progress":
                a = (a[0], _plain(a[1]))
            conn.send(("rpc", name, a, k))
        return method

    for name in RELAYED:
        setattr(Queue, name, relay(name))
    try:
        result = fn(*args, **kwargs)
        if inspect.isgenerator(result):
            for value in result:
                if stop.is_set():  # as spaces does: the value produced after Stop is not sent
                    result.close()
                    conn.send(("stopped",))
                    break
                conn.send(("value", value))
        else:
            conn.send(("value", result))
        conn.send(("end",))
    except Exception as exc:  # noqa: BLE001 (every exception crosses, as ZeroGPU passes it on)
        conn.send(("error", exc if isinstance(exc, gr.Error) else None, type(exc).__name__,
                   "".join(traceback.format_exception(exc))))
    finally:
        conn.close()
        os._exit(0)  # no atexit handlers, no pytest teardown in the child


class StandIn:
    def __init__(self, time_scale: float = 1.0):
        self.time_scale = time_scale  # > 1 when this CPU is slower than the GPU the durations assume
        self.calls: list[Call] = []

    def GPU(self, fn, duration=60):  # noqa: N802 (mirrors spaces.GPU)
        """`fn` as ZeroGPU runs it. `duration` (seconds, or a callable of the call's arguments)."""
        standin = self

        def start(args, kwargs) -> tuple[Call, object, object, object]:
            asked = duration(*args, **kwargs) if callable(duration) else duration
            call = Call(getattr(fn, "__name__", "call"), float(asked))
            standin.calls.append(call)
            parent, child = FORK.Pipe()
            stop = FORK.Event()
            context = (LocalContext.blocks.get(None), LocalContext.event_id.get(None))
            process = FORK.Process(target=_child, args=(fn, child, stop, context, call.asked * standin.time_scale),
                                   daemon=True)
            call.forked_at = time.monotonic()
            process.start()
            child.close()
            call.pid = process.pid
            parent.send((args, kwargs))  # pickled, like spaces' argument queue
            return call, process, parent, stop

        def messages(call, process, conn):
            """Each message of the call, until it ends; the call is killed past its duration."""
            deadline = call.forked_at + call.asked * standin.time_scale
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not conn.poll(left):
                    process.kill()
                    call.outcome = "aborted"
                    raise gr.Error("GPU task aborted", title="ZeroGPU worker error")
                try:
                    message = conn.recv()
                except EOFError:  # the process died
                    call.outcome = "aborted"
                    raise gr.Error("GPU task aborted", title="ZeroGPU worker error") from None
                if message[0] == "rpc":
                    _, name, a, k = message
                    blocks = LocalContext.blocks.get(None)
                    if blocks is not None and blocks._queue is not None:
                        getattr(blocks._queue, name)(*a, **k)
                    continue
                if message[0] == "error":
                    _, error, cls, formatted = message
                    call.outcome = f"error:{cls}"
                    call.messages.append(formatted)
                    if error is not None:
                        raise error
                    raise gr.Error(cls, title="ZeroGPU worker error")  # what spaces shows for any other exception
                yield message

        def drain(conn, timeout=10.0):
            until = time.monotonic() + timeout
            try:
                while conn.poll(max(0.0, until - time.monotonic())):
                    if conn.recv()[0] in ("stopped", "end", "error"):
                        return
            except (EOFError, OSError):
                return

        def finish(call, process, conn):
            conn.close()
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            if call.outcome == "running":
                call.outcome = "ok"
            stacks = _stacks_file(process.pid)
            if call.outcome == "aborted" and os.path.exists(stacks):  # where the killed call was
                with open(stacks) as fh:
                    call.messages.append(fh.read())
                print(f"ZeroGPU stand-in: call {call.name} killed after {call.asked:g} s:\n{call.messages[-1]}",
                      file=sys.stderr)
            with contextlib.suppress(FileNotFoundError):
                os.remove(stacks)

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                call, process, conn, stop = start(args, kwargs)
                try:
                    for message in messages(call, process, conn):
                        if message[0] == "value":
                            try:
                                yield message[1]
                            except GeneratorExit:  # Stop: the call closes its generator at its next yield
                                stop.set()
                                call.outcome = "stopped"
                                raise
                        elif message[0] in ("end", "stopped"):
                            return
                finally:
                    if call.outcome == "stopped":
                        drain(conn)  # it ends by itself after its next yield (which it must be able to send)
                    finish(call, process, conn)

            return stream

        @functools.wraps(fn)
        def regular(*args, **kwargs):
            call, process, conn, _ = start(args, kwargs)
            try:
                value = None
                for message in messages(call, process, conn):
                    if message[0] == "value":
                        value = message[1]
                    elif message[0] == "end":
                        return value
            finally:
                finish(call, process, conn)

        return regular
