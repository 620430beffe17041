"""Persona-judge Studio: the Gradio app. This file only builds the page and wires its events to
the handlers in `pjudge_core.ui.handlers` (testable without a browser).

    python app.py                  # honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT

Off ZeroGPU nothing is loaded at import: the model loads on the first Load or Run and is shared
by every visitor. On ZeroGPU every model the Space offers loads at import, in the main process, as
ZeroGPU asks, and each Run, front, inference and judge capacity is a `spaces.GPU` call that asks
for the GPU time its inputs need (`pjudge_core.ui.hosting`, `pjudge_core.ui.zerogpu`). Results are
per visitor. Tests put preloaded models in with `register_model`.
"""

from __future__ import annotations

from pathlib import Path

from pjudge_core.ui.hosting import Hosting, prepare_for_forks  # reads the environment; touches no CUDA

HOSTING = Hosting.from_env()
if HOSTING.zero_gpu:
    # Before anything touches CUDA (the models load below, on the CUDA it emulates in this process).
    # Only here, and not in a try: on ZeroGPU a broken `spaces` must stop the Space, loudly.
    import spaces

import gradio as gr

from pjudge_core import DecodeSettings, LoadedModel
from pjudge_core import presets as P
from pjudge_core.ui import insight, lab, render
from pjudge_core.ui.access import Access
from pjudge_core.ui.fields import raw
from pjudge_core.ui.form import MAX_PERSONAS
from pjudge_core.ui.handlers import Studio
from pjudge_core.ui.insight_handlers import DEFAULT_FRONT_TOKENS, DEFAULT_SAMPLES, MAX_SAMPLES, InsightHandlers
from pjudge_core.ui.models import ModelHolder, first_run, model_choices
from pjudge_core.ui.records import KEEP_SECONDS
from pjudge_core.ui.serving import SESSIONS, fix_session_growth, served
from pjudge_core.ui.zerogpu import GpuTime

FIT_NOTE = ("When an answer finishes, it is scored under every persona: per token, log p(token | query, persona) − "
            "log p(token | query), in nats. Blue: that persona made the model more willing to write the token; red: "
            "less. The scorer is the same model that wrote the answers (each panel names it), so this is its own "
            "opinion (partly circular), not a human judgement. Under it, independent meters that no language model "
            "computes (English only): Flesch–Kincaid grade (textstat), words, and VADER sentiment from −1 to +1.")
HERE = Path(__file__).resolve().parent
CSS_PATH = HERE / "assets" / "style.css"
CONCURRENCY_ID = "model"  # every event that uses the model shares these queue slots (`Access.concurrent_runs`)
DELETE_EVERY_S = 600  # Gradio's copies of the downloads are deleted after `KEEP_SECONDS`, checked this often
MODELS = ModelHolder()
if HOSTING.zero_gpu:  # every call's process inherits them, warmed up, and one CPU thread
    MODELS.preload(HOSTING.start_models(Access.from_env()), **HOSTING.load_kwargs)
    prepare_for_forks()

INTRO = """
# Persona-judge Studio
Two to four **preferences** (personas) steer one answer, with no training. The same model is prompted
once per persona. In each block of λ tokens one persona *drafts* and the next *judges*: a drafted token
is kept when the judge finds it likely enough (u ≤ p/q), otherwise the judge picks its own token. Roles
rotate every block, so the answer has to satisfy every persona. Tick other methods to watch them decode
side by side with the same seed: direct prompting (all preferences in one prompt), each persona alone,
logit fusion, and what the paper's official code actually does.
"""


def register_model(name: str, lm: LoadedModel) -> None:
    """Make a preloaded model selectable by `name` (tests use tiny models this way)."""
    MODELS.register(name, lm)


def persona_column(label: str, names: list[str], value: str, visible: bool = True):
    """A preset dropdown and an editable preference text for one persona."""
    with gr.Column(scale=5, visible=visible, min_width=240) as column:
        gr.HTML(f'<span class="pane-title pane-title-{label.lower()}">Persona {label}</span>')
        preset = gr.Dropdown(names, value=value, label=f"Preset {label}", elem_id=f"persona-{label.lower()}")
        text = gr.Textbox(P.persona_text(value) if value else "", label=f"Preference {label}", lines=2,
                          elem_id=f"pref-{label.lower()}")
    return column, preset, text


def build_demo(access: Access | None = None, *, hosting: Hosting | None = None, models: ModelHolder | None = None,
               gpu=None, token_costs: dict[str, float] | None = None) -> gr.Blocks:
    """The page. `access` (default: from the environment) says whether it is a public deployment,
    `hosting` what it runs on, `models` holds its models (default: this module's); `gpu` decorates
    the model handlers like `spaces.GPU` (default: that, on ZeroGPU); `token_costs` overrides the
    presets' ZeroGPU cost per token (tests)."""
    hosting = hosting or HOSTING
    access = access or Access.from_env()
    models = models or MODELS
    if gpu is None and hosting.zero_gpu:
        gpu = spaces.GPU
    gpu_time = GpuTime(access, zero_gpu=gpu is not None, token_costs=token_costs)
    studio = Studio(models, access, gpu_time)
    insights = InsightHandlers(models, access, gpu_time)

    def on_gpu(handler, duration):
        """A model handler as the page runs it (`served`), on ZeroGPU a GPU call asking for `duration`."""
        handler = served(handler)
        return handler if gpu is None else gpu(handler, duration=duration)

    data = P.presets()
    persona_names = list(data.personas)
    model_id = hosting.default_model(access)
    first_pair, first_query, recommended = first_run(model_id)
    pa, pb = P.pair_personas(first_pair) if first_pair else (persona_names[0], persona_names[-1])
    queries = data.queries or [first_query]
    defaults = DecodeSettings()

    with gr.Blocks(title="Persona-judge Studio", delete_cache=(DELETE_EVERY_S, KEEP_SECONDS)) as demo:
        gr.Markdown(INTRO)
        if access.public:
            gr.Markdown(" ".join(filter(None, (access.notice(), hosting.notice()))), elem_id="public-notice")
        record = gr.State(None)
        # How many personas are shown (2-4). A hidden number rather than a State, so API callers can set it.
        n_personas = raw(gr.Number(2, visible=False, precision=0, elem_id="n-personas"))

        # ---- model
        with gr.Row(equal_height=False):
            model = raw(gr.Dropdown(
                model_choices(access.models if access.public else None), value=model_id, label="Model",
                info=("The models this demo offers" if access.public else
                      "A preset, or type any Hugging Face id / local folder / .gguf path"),
                allow_custom_value=not access.public, scale=4, elem_id="model-select"))
            with gr.Column(scale=1, min_width=160):
                four_bit = gr.Checkbox(False, label="4-bit (NF4, CPU or GPU)", elem_id="four-bit",
                                       visible=not access.public or bool(access.four_bit),
                                       info="A third of the memory. Slower on CPUs without AVX512-BF16 "
                                            "(about 2× here); on a GPU, the way to fit 3B–8B models.")
                load_btn = gr.Button("Load", elem_id="load-btn")
        model_msg = gr.HTML(studio.start_status(), elem_id="model-status")

        # ---- personas
        pair = gr.Dropdown(list(data.pairs), value=first_pair, label="Ready-made pair",
                           info="Fills personas A and B; edit the texts freely", elem_id="pair-select")
        with gr.Row(equal_height=False):
            _, persona_a, pref_a = persona_column("A", persona_names, pa)
            swap_btn = gr.Button("⇄ Swap A↔B", scale=1, min_width=90, elem_id="swap-btn", size="sm")
            _, persona_b, pref_b = persona_column("B", persona_names, pb)
        with gr.Row(equal_height=False):
            col_c, persona_c, pref_c = persona_column("C", persona_names, None, visible=False)
            col_d, persona_d, pref_d = persona_column("D", persona_names, None, visible=False)
        with gr.Row():
            add_btn = gr.Button("+ Add persona", size="sm", elem_id="add-persona")
            remove_btn = gr.Button("− Remove persona", size="sm", elem_id="remove-persona")

        query = gr.Textbox(first_query, label="Query", lines=2, elem_id="query")
        gr.Examples([[q] for q in queries], inputs=[query], cache_examples=False, label="Example queries")

        # ---- methods and parameters
        methods = raw(gr.CheckboxGroup(
            lab.method_choices(2), value=list(lab.DEFAULT_SLOTS), label="Methods to compare",
            info="One panel per ticked method, all decoding at once with the same seed", elem_id="methods"))
        with gr.Accordion("Decoding parameters", open=False):
            with gr.Row():
                lam = raw(gr.Slider(1, 8, value=defaults.lam, step=1, label="λ: tokens drafted per block"))
                roles = raw(gr.Radio([("rotate every block (Persona-judge)", "alternate"),
                                      ("fixed: A drafts, B judges (Persona-judge-Base)", "fixed")],
                                     value="alternate", label="Roles in the Persona-judge panel"))
                greedy = gr.Checkbox(defaults.greedy, label="Greedy (deterministic)")
            with gr.Row():
                temperature = raw(gr.Slider(0.05, 2.0, value=defaults.temperature, step=0.05, label="Temperature"))
                top_k = raw(gr.Slider(0, 100, value=defaults.top_k, step=1, label="Top-k (0 = off)"))
                top_p = raw(gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p"))
            with gr.Row():
                repetition_penalty = raw(gr.Slider(
                    1.0, 2.0, value=recommended.repetition_penalty, step=0.05,
                    label="Repetition penalty (on the answer only; 1 = off)", elem_id="repetition-penalty"))
                no_repeat = raw(gr.Slider(0, 8, value=recommended.no_repeat_ngram_size, step=1,
                                          label="No-repeat n-gram size (0 = off)", elem_id="no-repeat"))
            with gr.Row():
                alpha = raw(gr.Slider(0.0, 3.0, value=0.0, step=0.1, label="Fusion α (0 = product of experts)",
                                      elem_id="fusion-alpha"))
                weights = gr.Textbox("", label="Fusion weights A:B:… (empty = equal)", elem_id="fusion-weights")
            with gr.Row():
                max_new = raw(gr.Slider(8, 512, value=defaults.max_new_tokens, step=8, label="Max new tokens",
                                        elem_id="max-new"))
                seed = raw(gr.Number(0, label="Seed (empty = random)", precision=0, elem_id="seed"))

        with gr.Row():
            run_btn = gr.Button("Run", variant="primary", elem_id="run-btn")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-btn")
        run_msg = gr.HTML("", elem_id="run-status")

        # ---- one panel per method
        panel_columns, panel_html = [], []
        with gr.Row(equal_height=False, elem_id="panels"):
            for slot in lab.SLOTS:
                slug = lab.slot_id(slot)
                html_id = {"persona-judge": "pj-tokens", "direct": "direct-output"}.get(slot, f"tokens-{slug}")
                with gr.Column(min_width=300, visible=slot in lab.DEFAULT_SLOTS, elem_id=f"panel-{slug}",
                               elem_classes=["pj-panel"]) as column:
                    html = gr.HTML(render.panel_html(lab.slot_spec(slot).label, "", []), elem_id=html_id)
                panel_columns.append(column)
                panel_html.append(html)
        gr.HTML(render.legend_html(), elem_id="pj-legend")
        heatmap = gr.Plot(label="Persona-judge, block by block", elem_id="pj-heatmap")
        with gr.Row():
            plot = gr.Plot(label="log(p/q) per token", elem_id="pj-plot")
            acceptance = gr.Plot(label="Acceptance rate", elem_id="pj-acceptance")
        download = gr.DownloadButton("Download this run (JSON: every panel's text, spec, settings, trace, persona "
                                     "fit, front, inference)", visible=False, size="sm", elem_id="run-download")

        # ---- insight: what did each persona do to the answers?
        gr.Markdown("### Did it work? Persona fit of every answer\n" + FIT_NOTE, elem_id="fit-note")
        fit_heatmap = gr.Plot(label="Persona fit per token", elem_id="fit-heatmap")
        with gr.Accordion("Which method served every persona best? Sample K answers per method", open=False,
                          elem_id="front-section"):
            gr.Markdown("Samples K answers per ticked method (seeds shared across methods), scores each under "
                        "every persona, and plots one point per answer with each method's mean and 95% interval. "
                        "With two fit axes, up and to the right is better for both personas; an axis can also "
                        "be an independent meter (reading grade, words, VADER sentiment) of each answer.")
            with gr.Row():
                front_k = raw(gr.Slider(1, MAX_SAMPLES, value=DEFAULT_SAMPLES, step=1, label="K: samples per method",
                                        elem_id="front-k"))
                front_tokens = raw(gr.Slider(8, 256, value=DEFAULT_FRONT_TOKENS, step=8, label="tokens per answer",
                                             elem_id="front-tokens"))
                front_x = raw(gr.Dropdown(InsightHandlers.axis_choices(2), value="A", label="x axis: fit or meter",
                                          elem_id="front-x"))
                front_y = raw(gr.Dropdown(InsightHandlers.axis_choices(2), value="B", label="y axis: fit or meter",
                                          elem_id="front-y"))
            with gr.Row():
                front_btn = gr.Button("Sample K per method", variant="primary", elem_id="front-btn")
                front_stop = gr.Button("Stop sampling", variant="stop", elem_id="front-stop")
            front_msg = gr.HTML("", elem_id="front-status")
            front_plot = gr.Plot(label="Persona fit per answer", elem_id="fit-front")
        front_state = gr.State(None)

        with gr.Accordion("Infer a persona from a user's example pairs", open=False, elem_id="infer-section"):
            gr.Markdown("Which candidate persona best explains what a user chose? Each candidate scores "
                        "Σ [log p(chosen | prompt, persona) − log p(rejected | prompt, persona)] under this model.")
            with gr.Row():
                infer_user = raw(gr.Dropdown(insight.user_choices(), value=None, label="A P-Soups user (bundled)",
                                             elem_id="infer-user", scale=3))
                with gr.Column(scale=2):
                    infer_kind = gr.Radio([(label, kind) for kind, label in insight.CANDIDATE_KINDS.items()],
                                          value="psoups", label="Candidates", elem_id="infer-candidates")
                    infer_write = gr.Checkbox(False, label="…and one the model writes from the pairs",
                                              info="Useful with larger models; a 135M model tends to paraphrase "
                                                   "the examples", elem_id="infer-write")
            infer_profile = gr.HTML("", elem_id="infer-profile")
            infer_pairs = gr.Dataframe(headers=["prompt", "chosen", "rejected"], column_count=(3, "fixed"),
                                       row_count=(3, "dynamic"), type="array", interactive=True, wrap=True,
                                       column_widths=["34%", "33%", "33%"],
                                       label="Example pairs (edit, add rows, or paste)", elem_id="infer-pairs")
            with gr.Accordion("Paste or upload JSON", open=False):
                infer_json = gr.Textbox("", lines=4, label="JSON: a list of {prompt, chosen, rejected}, or one "
                                        "user record", elem_id="infer-json")
                with gr.Row():
                    infer_json_btn = gr.Button("Put this JSON in the table", size="sm", elem_id="infer-json-btn")
                    infer_file = gr.UploadButton("Upload a .json file", file_types=[".json"], size="sm",
                                                 elem_id="infer-file")
            infer_btn = gr.Button("Infer the persona", variant="primary", elem_id="infer-btn")
            infer_out = gr.HTML("", elem_id="infer-result")
            with gr.Row():
                use_a = gr.Button("Use the best as persona A", size="sm", interactive=False, elem_id="infer-use-a")
                use_b = gr.Button("Use the best as persona B", size="sm", interactive=False, elem_id="infer-use-b")
        truth = gr.State(None)
        inference = gr.State(None)

        with gr.Accordion("Judge capacity: can this model tell two personas apart?", open=False):
            gr.Markdown("Scores a sample of the P-Soups student/PhD preference pairs: how often the "
                        "persona-prompted model prefers the answer written for that persona.")
            with gr.Row():
                cap_n = raw(gr.Slider(10, 200, value=40, step=10, label="pairs to score"))
                cap_btn = gr.Button("Measure judge capacity", elem_id="capacity-btn")
            cap_out = gr.HTML("", elem_id="capacity-result")

        # ---- wiring
        for preset, text in ((persona_a, pref_a), (persona_b, pref_b), (persona_c, pref_c), (persona_d, pref_d)):
            preset.input(Studio.persona_changed, preset, text, api_visibility="private")
        pair.input(Studio.pair_changed, pair, [persona_a, pref_a, persona_b, pref_b], api_visibility="private")
        swap_btn.click(Studio.swap, [persona_a, pref_a, persona_b, pref_b], [persona_a, pref_a, persona_b, pref_b],
                       api_visibility="private")
        count_outputs = [n_personas, col_c, col_d, methods]
        add_btn.click(lambda n, m: Studio.persona_count(min(MAX_PERSONAS, n + 1), m), [n_personas, methods],
                      count_outputs, api_visibility="private")
        remove_btn.click(lambda n, m: Studio.persona_count(max(2, n - 1), m), [n_personas, methods],
                         count_outputs, api_visibility="private")
        methods.change(Studio.panels_visible, methods, panel_columns, api_visibility="private")
        model.change(Studio.model_changed, model, [repetition_penalty, no_repeat], api_visibility="private")
        model_event = dict(concurrency_id=CONCURRENCY_ID, concurrency_limit=access.concurrent_runs)
        # Load needs no GPU call: on ZeroGPU it only reports what start-up loaded.
        load_btn.click(served(studio.load), [model, four_bit], model_msg, **model_event, api_name="load")
        run_event = run_btn.click(
            on_gpu(studio.run, gpu_time.run_duration(studio.run)),
            [model, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
             top_k, top_p, max_new, seed, methods, n_personas, persona_c, pref_c, persona_d, pref_d, alpha, weights,
             repetition_penalty, no_repeat, record],
            [*panel_html, heatmap, plot, acceptance, download, run_msg, record, fit_heatmap],
            **model_event, api_name="run",
        )
        run_event.then(studio.status, [model, four_bit], model_msg, api_visibility="private")
        stop_btn.click(lambda: render.message_html("Stopped.", "info"), None, run_msg, cancels=[run_event],
                       api_visibility="private")
        front_event = front_btn.click(
            on_gpu(insights.front, gpu_time.front_duration(insights.front)),
            [model, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature, top_k,
             top_p, seed, methods, n_personas, persona_c, pref_c, persona_d, pref_d, alpha, weights,
             repetition_penalty, no_repeat, front_k, front_tokens, front_x, front_y, record],
            [front_plot, front_msg, front_state, download, record], **model_event, api_name="front")
        front_stop.click(lambda: render.message_html("Stopped.", "info"), None, front_msg, cancels=[front_event],
                         api_visibility="private")
        for axis in (front_x, front_y):
            axis.input(InsightHandlers.front_axes, [front_state, front_x, front_y], front_plot,
                       api_visibility="private")
        n_personas.change(InsightHandlers.axes_choices, n_personas, [front_x, front_y], api_visibility="private")
        loaded = [infer_pairs, infer_profile, truth, infer_out]
        infer_user.input(InsightHandlers.pick_user, infer_user, loaded, api_visibility="private")
        infer_json_btn.click(InsightHandlers.paste_json, infer_json, loaded, api_visibility="private")
        infer_file.upload(InsightHandlers.upload, infer_file, loaded, api_visibility="private")
        infer_btn.click(on_gpu(insights.infer, gpu_time.infer_duration(insights.infer, insight.candidates)),
                        [model, four_bit, infer_pairs, infer_kind, truth, record, infer_write],
                        [infer_out, inference, use_a, use_b, download, record], **model_event, api_name="infer")
        use_a.click(InsightHandlers.use_best, inference, [persona_a, pref_a], api_visibility="private")
        use_b.click(InsightHandlers.use_best, inference, [persona_b, pref_b], api_visibility="private")
        cap_btn.click(on_gpu(studio.capacity, gpu_time.capacity_duration(studio.capacity)), [model, four_bit, cap_n],
                      cap_out, **model_event, api_name="capacity")

    demo.queue(default_concurrency_limit=1, max_size=access.queue_size if access.public else None)
    fix_session_growth()  # a Gradio 6.31 bug: without it every streamed update grows the visitor's session
    return demo


def launch_kwargs() -> dict:
    return {"css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
            "theme": gr.themes.Soft(), "state_session_capacity": SESSIONS}


if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())
