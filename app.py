"""Persona-judge Studio: a Gradio app on top of `pjudge_core`.

    python app.py                  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

Nothing is loaded at import. The model loads on the first Load or Run and is cached once per
process (`MODELS`, keyed by (name, quantize), guarded by a lock); run results are per user
(`gr.State`). Tests can put a preloaded model in the cache with `register_model(name, lm)`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

try:  # Hugging Face ZeroGPU: must be imported before CUDA is touched
    import spaces  # type: ignore

    GPU = spaces.GPU(duration=120)
except Exception:  # not on Spaces
    def GPU(fn):  # noqa: N802 (mirrors spaces.GPU)
        return fn

import gradio as gr

from pjudge_core import (
    BUNDLED,
    DecodeSettings,
    LoadedModel,
    PJudgeError,
    load_model,
    stream_generate,
)
from pjudge_core import presets as P
from pjudge_core.evaluation.alignment import judge_capacity
from pjudge_core.ui import charts, records, render

HERE = Path(__file__).resolve().parent
CSS_PATH = HERE / "assets" / "style.css"
ON_SPACES = bool(os.environ.get("SPACE_ID"))
UPDATE_EVERY_S = 0.25  # at most ~4 UI updates per second while streaming (plus the first and last)
CONCURRENCY_ID = "model"

INTRO = """
# Persona-judge Studio
Two **preferences** (personas) steer one answer, with no training. The same model is prompted twice:
once with preference **A**, once with **B**. In each block of λ tokens one persona *drafts* and the
other *judges*: a drafted token is kept when the judge finds it likely enough (u ≤ p/q), otherwise the
judge picks its own token. Roles swap every block, so the answer has to satisfy both.
Alongside it, the usual baseline: both preferences written into a single prompt ("direct prompting").
"""


# --------------------------------------------------------------------------- model holder
class ModelHolder:
    """One loaded model per process (a model is shared, not per-user data)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.key: tuple[str, str | None] | None = None
        self.lm: LoadedModel | None = None
        self.registered: dict[str, LoadedModel] = {}

    def register(self, name: str, lm: LoadedModel) -> None:
        with self.lock:
            self.registered[name] = lm

    def current(self) -> LoadedModel | None:
        return self.lm

    def get(self, name: str, quantize: str | None = None) -> LoadedModel:
        name = (name or "").strip() or BUNDLED
        with self.lock:
            if name in self.registered:
                self.key, self.lm = (name, None), self.registered[name]
                return self.lm
            if self.key == (name, quantize) and self.lm is not None:
                return self.lm
            self.lm, self.key = None, None  # free the old weights before loading new ones
            lm = load_model(name, quantize=quantize)
            warm_up(lm)
            self.key, self.lm = (name, quantize), lm
            return lm


MODELS = ModelHolder()


def warm_up(lm: LoadedModel) -> None:
    """One tiny run right after loading, so the first real Run shows its first token quickly
    (the first forwards of a fresh model are several times slower: allocator, kernels)."""
    try:
        stream_generate(lm, "persona-judge", "Hi", ["Be brief.", "Be kind."],
                        DecodeSettings(max_new_tokens=6, lam=2, greedy=True)).run()
    except Exception:  # a warm-up must never break loading
        pass


def register_model(name: str, lm: LoadedModel) -> None:
    """Make a preloaded model selectable by `name` (tests use a tiny model this way)."""
    MODELS.register(name, lm)


def default_model() -> str:
    if ON_SPACES:
        for m in P.model_presets():
            if m.spaces_default:
                return m.id
    return BUNDLED


def model_choices() -> list[tuple[str, str]]:
    out = []
    for m in P.model_presets():
        label = m.label if m.label != m.id else m.id
        out.append((f"{label}  ·  {m.size}" if m.size else label, m.id))
    return out


def _quant(four_bit: bool) -> str | None:
    return "4bit" if four_bit else None


def _describe(lm: LoadedModel) -> str:
    ctx = lm.context_length
    return f"Loaded: {lm.name} · device {lm.device} · dtype {lm.dtype}" + (
        " · 4-bit" if lm.quantize == "4bit" else "") + (f" · context {ctx} tokens" if ctx else "")


# --------------------------------------------------------------------------- handlers
@GPU
def load_handler(name, four_bit, progress=gr.Progress()):
    progress(0.1, desc=f"Loading {name or BUNDLED} …")
    t0 = time.perf_counter()
    try:
        lm = MODELS.get(name, _quant(four_bit))
    except PJudgeError as exc:
        return render.message_html(str(exc), "error")
    except Exception as exc:  # keep the page readable even for unexpected failures
        return render.message_html(f"Could not load {name!r}: {type(exc).__name__}: {exc}", "error")
    progress(1.0)
    return render.message_html(f"{_describe(lm)} ({time.perf_counter() - t0:.1f} s)", "ok")


def _names(persona_a, persona_b) -> dict[str, str]:
    return {"A": persona_a or "custom", "B": persona_b or "custom"}


@GPU
def run_handler(model_name, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy,
                temperature, top_k, top_p, max_new_tokens, seed):
    """Persona-judge streams first, then direct prompting with the same settings and seed.

    Yields (pj_html, direct_text, stats_html, logratio_plot, acceptance_plot, download, message, record).
    """
    skip = gr.skip()
    names = _names(persona_a, persona_b)

    def out(pj_html=skip, direct=skip, stats=skip, plot1=skip, plot2=skip, file=skip, msg=skip, record=skip):
        return pj_html, direct, stats, plot1, plot2, file, msg, record

    try:
        settings = DecodeSettings.from_inputs(
            lam=lam, alternate=(roles != "fixed"), greedy=greedy, temperature=temperature, top_k=top_k,
            top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
        if MODELS.current() is None or (MODELS.key or ("",))[0] != ((model_name or "").strip() or BUNDLED):
            yield out(msg=render.message_html(f"Loading {model_name or BUNDLED} … (first run only)", "info"))
        lm = MODELS.get(model_name, _quant(four_bit))
        pj_stream = stream_generate(lm, "persona-judge", query, [pref_a, pref_b], settings)
        direct_stream = stream_generate(lm, "direct", query, [pref_a, pref_b], settings)
    except PJudgeError as exc:
        yield out(msg=render.message_html(str(exc), "error"))
        return
    except Exception as exc:
        yield out(msg=render.message_html(f"{type(exc).__name__}: {exc}", "error"))
        return

    steps, direct_steps = [], []
    try:
        yield out(render.tokens_html([], running=True, placeholder="Persona-judge is decoding …"), "",
                  render.stats_html(None), None, None, None,
                  render.message_html(f"Running Persona-judge on {lm.name} …", "info"))
        last = 0.0
        for step in pj_stream:
            steps.append(step)
            now = time.perf_counter()
            if len(steps) == 1 or now - last >= UPDATE_EVERY_S:
                last = now
                yield out(render.tokens_html(steps, running=True, persona_names=names))
        pj = pj_stream.result
        yield out(render.tokens_html(steps, persona_names=names), stats=render.stats_html(pj.stats),
                  plot1=charts.logratio_figure(steps), plot2=charts.acceptance_figure(steps),
                  msg=render.message_html("Persona-judge done; now direct prompting (both preferences in one "
                                          "prompt) …", "info"))
        text, last = "", 0.0
        for step in direct_stream:
            direct_steps.append(step)
            text += step.text
            now = time.perf_counter()
            if len(direct_steps) == 1 or now - last >= UPDATE_EVERY_S:
                last = now
                yield out(direct=text)
        direct = direct_stream.result
        record = records.run_record(pj, direct, {"model": lm.describe(), "personas": names})
        path = records.write_record(record)
        yield out(direct=direct.text, stats=render.stats_html(pj.stats, direct.stats), file=path,
                  msg=render.message_html(
                      f"Done: Persona-judge {pj.stats['new_tokens']} tokens, direct {direct.stats['new_tokens']} "
                      f"tokens. Hover the coloured tokens for details.", "ok"),
                  record=record)
    except PJudgeError as exc:
        yield out(msg=render.message_html(str(exc), "error"))
    finally:  # Stop (GeneratorExit here) or an error: release the model for the next click
        pj_stream.close()
        direct_stream.close()


@GPU
def capacity_handler(model_name, four_bit, n, progress=gr.Progress()):
    """Judge capacity: can this model tell personas apart (alignment accuracy on student/PhD pairs)?"""
    try:
        progress(0.0, desc="Loading the model …")
        lm = MODELS.get(model_name, _quant(four_bit))
        res = judge_capacity(lm, n=int(n), seed=0,
                             progress=lambda done, total: progress((done, total), desc="Scoring pairs"))
    except PJudgeError as exc:
        return render.message_html(str(exc), "error")
    except Exception as exc:
        return render.message_html(f"{type(exc).__name__}: {exc}", "error")
    return render.message_html(capacity_text(lm.name, res), "ok")


def capacity_text(name: str, res: dict) -> str:
    def pct(x):
        return "–" if x is None else f"{100 * x:.0f}%"

    low, high = res.get("low"), res.get("high")
    interval = f" (95% interval {pct(low)}–{pct(high)})" if low is not None and high is not None else ""
    by = res.get("by_persona") or {}
    parts = []
    for persona, value in by.items():
        acc = value.get("accuracy") if isinstance(value, dict) else value
        if isinstance(acc, (int, float)):
            parts.append(f"{persona}: {pct(acc)}")
    per = f"; by persona: {', '.join(parts)}" if parts else ""
    return (f"{name}: alignment accuracy {pct(res.get('accuracy'))}{interval} on {res.get('n')} student/PhD "
            f"preference pairs{per}. Near 50% means the model barely tells the two personas apart, so it is a "
            "weak judge.")


def persona_changed(name):
    if not name:
        return gr.skip()
    try:
        return P.persona_text(name)
    except PJudgeError:
        return gr.skip()


def pair_changed(name):
    if not name:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    try:
        a, b = P.pair_personas(name)
        ta, tb = P.pair(name)
    except PJudgeError:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return a, ta, b, tb


def swap(persona_a, pref_a, persona_b, pref_b):
    return persona_b, pref_b, persona_a, pref_a


# --------------------------------------------------------------------------- layout
def build_demo() -> gr.Blocks:
    data = P.presets()
    persona_names = list(data.personas)
    first_pair = next(iter(data.pairs), None)
    pa, pb = P.pair_personas(first_pair) if first_pair else (persona_names[0], persona_names[-1])
    queries = data.queries or ["Describe a sunset over the sea."]

    with gr.Blocks(title="Persona-judge Studio") as demo:
        gr.Markdown(INTRO)
        record = gr.State(None)

        with gr.Row(equal_height=False):
            model = gr.Dropdown(model_choices(), value=default_model(), label="Model",
                                info="A preset, or type any Hugging Face id / local folder / .gguf path",
                                allow_custom_value=True, scale=4, elem_id="model-select")
            with gr.Column(scale=1, min_width=160):
                four_bit = gr.Checkbox(False, label="4-bit (needs a CUDA GPU)", elem_id="four-bit")
                load_btn = gr.Button("Load", elem_id="load-btn")
        model_msg = gr.HTML(render.message_html(
            "No model loaded yet; it loads on Load or on the first Run.", "info"), elem_id="model-status")

        pair = gr.Dropdown(list(data.pairs), value=first_pair, label="Ready-made pair",
                           info="Fills both personas; edit the texts freely", elem_id="pair-select")
        with gr.Row():
            with gr.Column(scale=5):
                gr.HTML('<span class="pane-title-a">Persona A</span> (orange underline)')
                persona_a = gr.Dropdown(persona_names, value=pa, label="Preset A", elem_id="persona-a")
                pref_a = gr.Textbox(P.persona_text(pa), label="Preference A", lines=2, elem_id="pref-a")
            swap_btn = gr.Button("⇄ Swap A↔B", scale=1, min_width=90, elem_id="swap-btn", size="sm")
            with gr.Column(scale=5):
                gr.HTML('<span class="pane-title-b">Persona B</span> (purple underline)')
                persona_b = gr.Dropdown(persona_names, value=pb, label="Preset B", elem_id="persona-b")
                pref_b = gr.Textbox(P.persona_text(pb), label="Preference B", lines=2, elem_id="pref-b")

        query = gr.Textbox(queries[0], label="Query", lines=2, elem_id="query")
        gr.Examples([[q] for q in queries], inputs=[query], cache_examples=False, label="Example queries")

        with gr.Accordion("Decoding parameters", open=False):
            with gr.Row():
                lam = gr.Slider(1, 8, value=4, step=1, label="λ: tokens drafted per block")
                roles = gr.Radio([("alternate roles every block (Persona-judge)", "alternate"),
                                  ("fixed roles: A drafts, B judges (Persona-judge-Base)", "fixed")],
                                 value="alternate", label="Roles")
                greedy = gr.Checkbox(False, label="Greedy (deterministic)")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=0.9, step=0.05, label="Temperature")
                top_k = gr.Slider(0, 100, value=20, step=1, label="Top-k (0 = off)")
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
            with gr.Row():
                max_new = gr.Slider(8, 512, value=128, step=8, label="Max new tokens", elem_id="max-new")
                seed = gr.Number(0, label="Seed (empty = random)", precision=0)

        with gr.Row():
            run_btn = gr.Button("Run", variant="primary", elem_id="run-btn")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
        run_msg = gr.HTML("", elem_id="run-status")

        with gr.Row(equal_height=False):
            with gr.Column():
                gr.Markdown("### Persona-judge (A and B take turns drafting and judging)")
                pj_html = gr.HTML(render.tokens_html([]), elem_id="pj-tokens")
            with gr.Column():
                gr.Markdown("### Direct prompting (both preferences in one prompt)")
                direct = gr.Textbox("", label="Direct prompting answer", lines=10, max_lines=30,
                                    interactive=False, elem_id="direct-output")
        gr.HTML(render.legend_html(), elem_id="pj-legend")
        stats = gr.HTML(render.stats_html(None), elem_id="pj-stats")
        with gr.Row():
            plot1 = gr.Plot(label="log(p/q) per token", elem_id="pj-plot")
            plot2 = gr.Plot(label="Acceptance rate", elem_id="pj-acceptance")
        download = gr.File(label="Download this run (both texts, settings, full trace) as JSON",
                           interactive=False, elem_id="run-download")

        with gr.Accordion("Judge capacity: can this model tell two personas apart?", open=False):
            gr.Markdown("Scores a sample of the P-Soups student/PhD preference pairs: how often the "
                        "persona-prompted model prefers the answer written for that persona.")
            with gr.Row():
                cap_n = gr.Slider(10, 200, value=40, step=10, label="pairs to score")
                cap_btn = gr.Button("Measure judge capacity", elem_id="capacity-btn")
            cap_out = gr.HTML("", elem_id="capacity-result")

        # ---- wiring
        persona_a.input(persona_changed, persona_a, pref_a, api_visibility="private")
        persona_b.input(persona_changed, persona_b, pref_b, api_visibility="private")
        pair.input(pair_changed, pair, [persona_a, pref_a, persona_b, pref_b], api_visibility="private")
        swap_btn.click(swap, [persona_a, pref_a, persona_b, pref_b], [persona_a, pref_a, persona_b, pref_b],
                       api_visibility="private")
        load_btn.click(load_handler, [model, four_bit], model_msg, concurrency_id=CONCURRENCY_ID,
                       api_name="load")
        run_event = run_btn.click(
            run_handler,
            [model, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
             top_k, top_p, max_new, seed],
            [pj_html, direct, stats, plot1, plot2, download, run_msg, record],
            concurrency_id=CONCURRENCY_ID, api_name="run",
        )
        run_event.then(lambda: render.message_html(_describe(MODELS.current()), "ok")
                       if MODELS.current() else gr.skip(), None, model_msg, api_visibility="private")
        stop_btn.click(lambda: render.message_html("Stopped.", "info"), None, run_msg, cancels=[run_event],
                       api_visibility="private")
        cap_btn.click(capacity_handler, [model, four_bit, cap_n], cap_out, concurrency_id=CONCURRENCY_ID,
                      api_name="capacity")

    demo.queue(default_concurrency_limit=1)
    return demo


def launch_kwargs() -> dict:
    return {"css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
            "theme": gr.themes.Soft()}


if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())
