"""What the tabs share: the app's services, and the components that events of several tabs use.

`app.build_demo` makes one `Page` inside its `gr.Blocks`, builds every tab's layout (each tab's
`build`), then wires every tab's events (each tab's `wire`), which may read or write another
tab's components through the page (`page.compare`, `page.did_it_work`, ...). The model handlers
run as the page serves them (`serving.served`), on ZeroGPU as GPU calls asking for the time
their inputs need (`on_gpu`, `zerogpu.GpuTime`).
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from .deployment import Deployment
from .fields import raw
from .models import ModelHolder
from .serving import served
from .zerogpu import GpuTime

CONCURRENCY_ID = "model"  # every event that uses the model shares these queue slots (`Access.concurrent_runs`)


class Page:
    """The services and shared components of one page (see the module docstring). The tabs are its
    attributes once built (`compare`, `did_it_work`, `infer`, `capacity`); they import this module,
    so it names none of them."""

    def __init__(self, deployment: Deployment, models: ModelHolder, gpu: Callable | None = None,
                 token_costs: dict[str, float] | None = None, blocks: gr.Blocks | None = None):
        self.deployment = deployment
        self.blocks = blocks  # the page's Blocks: its load event (a share link fills the form in)
        self.access = deployment.access
        self.models = models
        self._gpu = gpu  # `spaces.GPU` (or a stand-in) on ZeroGPU, else None
        self.gpu_time = GpuTime(self.access, zero_gpu=gpu is not None, token_costs=token_costs)
        # Outside the tabs (they hold no layout; a State between two Tabs made Gradio 6.31 draw the later
        # tabs' buttons twice): the run's record (the download's content: a run, a front, an inference),
        # the last front (its axes can change), a user's ground truth and the last inference.
        self.record = gr.State(None)
        self.front, self.truth, self.inference = gr.State(None), gr.State(None), gr.State(None)
        # How many personas are shown (2-4). A hidden number rather than a State, so API callers can set it.
        self.n_personas = raw(gr.Number(2, visible=False, precision=0, elem_id="n-personas"))

    @property
    def model_event(self) -> dict:
        """The queue settings of every event that uses the model."""
        return dict(concurrency_id=CONCURRENCY_ID, concurrency_limit=self.access.concurrent_runs)

    def on_gpu(self, handler: Callable, duration: Callable[[Callable], Callable]) -> Callable:
        """A model handler as the page runs it (`served`); on ZeroGPU a GPU call asking for
        `duration(handler)` seconds (a `GpuTime` estimate bound to the handler's parameters)."""
        handler = served(handler)
        return handler if self._gpu is None else self._gpu(handler, duration=duration(handler))


class Tab:
    """What every tab holds: its page, and the page's models, access rules and GPU time."""

    def __init__(self, page: Page):
        self.page = page
        self.models, self.access, self.gpu = page.models, page.access, page.gpu_time
