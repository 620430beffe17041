"""Stop buttons that have the last word.

Gradio's frontend sends a Stop click's cancellation and its handler at the same time, so an update
the cancelled run yielded just before it ended can reach the page after the Stop handler's
"Stopped." and overwrite it. A `Stoppable` run marks, per browser session, when its generator has
ended (closed by the cancellation, finished or failed); the Stop handler waits for that before it
answers, so its message is the last one the session receives. Gradio's frontend dispatches a button's
events in the order they were registered and waits for each handler, so the cancellation is its own
event registered before the Stop handler's (``btn.click(None, cancels=[run])`` first): the other way
round, the cancellation would wait for a Stop that waits for it.

The mark lives in the page's process around the handler as the page serves it (`Page.on_gpu`), so on
ZeroGPU too it wraps the generator that Gradio iterates, not the GPU call's child process.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator

import gradio as gr

from . import render

STOP_WAIT_S = 10.0  # the longest a Stop answer waits for its run's last step (one decoding step on CPU)


def session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


class Stoppable:
    """The long runs of one event (a Compare run, a front) that a Stop button ends, per session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: dict[str, threading.Event] = {}  # session -> set once its latest run has ended

    def wrap(self, handler: Callable[..., Iterator]) -> Callable[..., Iterator]:
        """-> the generator handler with Gradio's request added as its last parameter (Gradio passes
        special parameters positionally; API callers never see it), marking when each session's run ends."""
        signature = inspect.signature(handler)
        request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                    annotation=gr.Request)
        exposed = signature.replace(parameters=[*signature.parameters.values(), request])

        @functools.wraps(handler)
        def run(*args, **kwargs) -> Iterator:
            bound = exposed.bind(*args, **kwargs)
            key = session(bound.arguments.pop("request", None))
            ended = threading.Event()
            with self._lock:
                self._ended[key] = ended
            try:
                yield from handler(*bound.args, **bound.kwargs)
            finally:  # GeneratorExit (Stop), the last update or an error
                ended.set()
                with self._lock:
                    if self._ended.get(key) is ended:
                        del self._ended[key]

        run.__signature__ = exposed
        # Gradio finds the request by this type hint; the handler's own hints (strings under postponed
        # evaluation, naming its module's imports) are left out, as one unresolvable name hides them all.
        run.__annotations__ = {"request": gr.Request}
        return run

    def stop(self, request: gr.Request) -> str:
        """The Stop button's handler: -> "Stopped." once this session's run has ended (or after
        `STOP_WAIT_S`, a run's step being that slow)."""
        with self._lock:
            ended = self._ended.get(session(request))
        if ended is not None:
            ended.wait(STOP_WAIT_S)
        return render.message_html("Stopped.", "info")
