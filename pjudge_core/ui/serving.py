"""How the page's model handlers are served, for a long life on a public deployment.

* `served(handler)`: what a visitor should read is re-raised as a `gr.Error` with its sentence (on
  ZeroGPU only a `gr.Error` keeps its message across the call's process boundary; any other
  exception becomes a generic "ZeroGPU worker error"), and after every call the memory it freed is
  given back to the operating system (glibc keeps freed pages of its per-thread arenas otherwise,
  and the process grows run after run: docs/benchmarks.md, `scripts/soak.py`).
* Every call (each step of a streaming handler) runs in a thread of its own that ends with it
  (`turns.in_own_thread`): a server's worker thread that stays alive after loading the model or
  scoring an answer would otherwise keep a team of OpenMP threads that slows every forward of the
  engine's thread (`scripts/bench_threads.py`, `scripts/bench_visitors.py`; docs/benchmarks.md).
* `fix_session_growth()`: Gradio 6.31 keeps a component for every update in a visitor's session.
  A `gr.skip()` (or any `gr.update`) stores a new component under the output's id; when the next
  value arrives, `Blocks.postprocess_data` finds that component and registers it again under its
  *own* new id, with a copy of its config holding the value. A streaming run alternates skips and
  values (a panel skipped while another grows), so every alternation kept one more panel's HTML or
  chart, a session growing with every run and its tokens (docs/benchmarks.md). The fix
  gives the stored component the id it stands for, so it is found registered and nothing is added.
* `pass_skips_through()`: Gradio 6.31 answers every `gr.skip()` in a handler's outputs by building a
  new component and its whole config (JSON schemas included) on the server's event loop. A
  streaming run skips most of its ~16 outputs at every update, so with four visitors streaming
  this was the event loop's largest cost and held the GIL the decoding thread needed (profiled:
  docs/benchmarks.md). A skipped output now goes to the browser as
  `{"__type__": "update"}`, built by nothing: what Gradio sends for most components (for an HTML
  output it also copied "__type__" into the component's extra props, which nothing reads).
* `SESSIONS`: Gradio keeps every visitor's session (its own copy of the page's config, about half a
  MiB here, plus its States) until 10,000 sessions; a public deployment keeps the most recent ones.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import inspect
from collections.abc import Callable

import gradio as gr
from gradio.blocks import Block, Blocks
from gradio.components import State
from gradio.state_holder import SessionState

from ..engine.memory import is_out_of_memory
from ..errors import OUT_OF_MEMORY, PJudgeError
from .turns import in_own_thread, in_own_threads

SESSIONS = 200  # sessions kept in memory (Gradio's `state_session_capacity`; least recently used go first)


def readable(exc: Exception) -> gr.Error | None:
    """The `gr.Error` a visitor should read for `exc`, or None to let it pass as it is (a bug: its
    traceback goes to the log)."""
    if isinstance(exc, gr.Error):
        return None
    if isinstance(exc, PJudgeError):
        return gr.Error(str(exc))
    if is_out_of_memory(exc):  # the engine's own sentence (it fails only the request that ran out)
        return gr.Error(OUT_OF_MEMORY)
    return None


def release_memory() -> None:
    """Give the memory freed by a call back to the OS (glibc only; elsewhere nothing to do)."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


@functools.cache
def _libc():
    return ctypes.CDLL("libc.so.6")


def served(handler: Callable) -> Callable:
    """`handler` as the page runs it (see the module docstring). Generators stay generators (Gradio
    and ZeroGPU both look) and the signature is the handler's (Gradio reads it)."""

    def reraise(exc: Exception):
        error = readable(exc)
        if error is None:
            raise exc
        raise error from exc

    # Not the handler's attributes (`updated=()`): a bound method lends its function's, and a
    # `form.takes_form` handler's `__signature__` names `self`, which the bound method drops.
    wraps = functools.wraps(handler, updated=())
    if inspect.isgeneratorfunction(handler):
        @wraps
        def stream(*args, **kwargs):
            try:
                yield from in_own_threads(handler(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 (re-raised, readable or as it was)
                reraise(exc)
            finally:
                release_memory()

        return stream

    @wraps
    def call(*args, **kwargs):
        try:
            return in_own_thread(handler, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (re-raised, readable or as it was)
            reraise(exc)
        finally:
            release_memory()

    return call


def fix_session_growth() -> None:
    """Store an output's replacement component under the id it stands for (see the module docstring).
    Idempotent; a State's value is left alone (it may be anything, a component included)."""
    if getattr(SessionState.__setitem__, "keeps_ids", False):
        return
    setitem = SessionState.__setitem__

    @functools.wraps(setitem)
    def keep_id(self: SessionState, key: int, value) -> None:
        block = self.blocks_config.blocks.get(key)
        if isinstance(value, Block) and block is not None and not isinstance(block, State) and value._id != key:
            value._id = key
        setitem(self, key, value)

    keep_id.keeps_ids = True
    SessionState.__setitem__ = keep_id


SKIP = {"__type__": "update"}  # what `gr.skip()` is, and what the browser receives for it


def pass_skips_through() -> None:
    """Send skipped outputs to the browser without building a component for each (see the module
    docstring); every other output goes through Gradio's own postprocessing. Idempotent."""
    if getattr(Blocks.postprocess_data, "passes_skips", False):
        return
    postprocess = Blocks.postprocess_data

    @functools.wraps(postprocess)
    async def passing(self: Blocks, block_fn, predictions, state):
        outputs = block_fn.outputs
        if (block_fn.batch or not isinstance(predictions, (list, tuple)) or len(outputs) < 2
                or len(predictions) != len(outputs)):
            return await postprocess(self, block_fn, predictions, state)
        kept = [i for i, (block, value) in enumerate(zip(outputs, predictions))
                if not (isinstance(value, dict) and value == SKIP and not block.stateful)]  # a DataFrame's == is elementwise
        if len(kept) == len(outputs):
            return await postprocess(self, block_fn, predictions, state)
        result = [dict(SKIP) for _ in outputs]
        if kept:
            view = copy.copy(block_fn)  # the same event, only its outputs that change
            view.outputs = [outputs[i] for i in kept]
            values = [predictions[i] for i in kept]
            done = await postprocess(self, view, values[0] if len(kept) == 1 else values, state)
            for i, value in zip(kept, done):
                result[i] = value
        return result

    passing.passes_skips = True
    Blocks.postprocess_data = passing
