"""Persona-judge Studio: the Gradio app. This file only assembles the page's tabs and launches it;
each tab builds its layout, wires its events and owns its handlers (`pjudge_core.ui.tabs`).

    python app.py                  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

The deployment (hardware, public limits, models offered) is read from the environment once, here
(`pjudge_core.ui.deployment`). Off ZeroGPU nothing is loaded at import: the model loads on the
first Load or Run and is shared by every visitor. On ZeroGPU every model the Space offers loads at
import, in the main process, as ZeroGPU asks, and each Run, front, inference and judge capacity is
a `spaces.GPU` call that asks for the GPU time its inputs need (`pjudge_core.ui.zerogpu`).
Results are per visitor. Tests put preloaded models in with `register_model`.
"""

from __future__ import annotations

from pathlib import Path

from pjudge_core.ui.deployment import Deployment, prepare_for_forks  # reads the environment; touches no CUDA

DEPLOYMENT = Deployment.from_env()
if DEPLOYMENT.zero_gpu:
    # Before anything touches CUDA (the models load below, on the CUDA it emulates in this process).
    # Only here, and not in a try: on ZeroGPU a broken `spaces` must stop the Space, loudly.
    import spaces

import gradio as gr

from pjudge_core import LoadedModel
from pjudge_core.ui.models import ModelHolder
from pjudge_core.ui.page import Page
from pjudge_core.ui.records import KEEP_SECONDS
from pjudge_core.ui.serving import SESSIONS, fix_session_growth, pass_skips_through
from pjudge_core.ui.tabs import about
from pjudge_core.ui.tabs.capacity import CapacityTab
from pjudge_core.ui.tabs.compare import CompareTab
from pjudge_core.ui.tabs.did_it_work import DidItWorkTab
from pjudge_core.ui.tabs.infer import InferTab

HERE = Path(__file__).resolve().parent
CSS_PATH = HERE / "assets" / "style.css"
DELETE_EVERY_S = 600  # Gradio's copies of the downloads are deleted after `KEEP_SECONDS`, checked this often
MODELS = ModelHolder()
if DEPLOYMENT.zero_gpu:  # every call's process inherits them, warmed up, and one CPU thread
    MODELS.preload(DEPLOYMENT.start_models(), **DEPLOYMENT.load_kwargs)
    prepare_for_forks()


def register_model(name: str, lm: LoadedModel) -> None:
    """Make a preloaded model selectable by `name` (tests use tiny models this way)."""
    MODELS.register(name, lm)


def build_demo(deployment: Deployment | None = None, *, models: ModelHolder | None = None, gpu=None,
               token_costs: dict[str, float] | None = None) -> gr.Blocks:
    """The page. `deployment` (default: the environment's) says what it runs on and what a visitor may
    do, `models` holds its models (default: this module's); `gpu` decorates the model handlers like
    `spaces.GPU` (default: that, on ZeroGPU); `token_costs` overrides the presets' ZeroGPU cost per
    token (tests)."""
    deployment = deployment or DEPLOYMENT
    if gpu is None and deployment.zero_gpu:
        gpu = spaces.GPU
    with gr.Blocks(title="Persona-judge Studio", delete_cache=(DELETE_EVERY_S, KEEP_SECONDS)) as demo:
        gr.Markdown(about.HEADER, elem_id="header")
        if deployment.access.public:
            gr.Markdown(deployment.notice(), elem_id="public-notice")
        page = Page(deployment, models or MODELS, gpu, token_costs, blocks=demo)
        page.compare, page.did_it_work = CompareTab(page), DidItWorkTab(page)
        page.infer, page.capacity = InferTab(page), CapacityTab(page)
        # "wrap": on a phone every tab stays in sight (a menu would hide the ones a newcomer should find).
        # A tab's content enters the page when it is first opened; until then Gradio 6.31 keeps only a
        # component's last update (the Compare tab's run repeats the fit heatmap in its last update).
        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):
            for tab in (page.compare, page.did_it_work, page.infer, page.capacity):
                tab.build()
            about.build()
        for tab in (page.compare, page.did_it_work, page.infer, page.capacity):
            tab.wire()

    demo.queue(default_concurrency_limit=1, max_size=deployment.access.queue_size if deployment.access.public
               else None)
    fix_session_growth()  # a Gradio 6.31 bug: without it every streamed update grows the visitor's session
    pass_skips_through()  # and without this every skipped output builds a component on the event loop
    return demo


def launch_kwargs() -> dict:
    return {"css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
            "theme": gr.themes.Soft(), "state_session_capacity": SESSIONS}


if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())
