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

import json
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
from pjudge_core.ui import about, insight, lab, render
from pjudge_core.ui.access import Access
from pjudge_core.ui.fields import raw
from pjudge_core.ui.form import MAX_PERSONAS
from pjudge_core.ui.handlers import Studio
from pjudge_core.ui.insight_handlers import DEFAULT_FRONT_TOKENS, DEFAULT_SAMPLES, MAX_SAMPLES, InsightHandlers
from pjudge_core.ui.models import ModelHolder, first_run, model_choices
from pjudge_core.ui.records import KEEP_SECONDS
from pjudge_core.ui.serving import SESSIONS, fix_session_growth, pass_skips_through, served
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



def on_run_js(cleared: str) -> str:
    """What Run does in the browser: scroll to the panels unless their top is on screen, and return
    `cleared` (HTML) for "Did it work?"'s table."""
    return ("() => { const panels = document.getElementById('panels');"
            " if (panels && panels.getBoundingClientRect().top > window.innerHeight - 160)"
            " panels.scrollIntoView({behavior: 'smooth', block: 'start'});"
            f" return {json.dumps(cleared)}; }}")


def register_model(name: str, lm: LoadedModel) -> None:
    """Make a preloaded model selectable by `name` (tests use tiny models this way)."""
    MODELS.register(name, lm)


def persona_column(label: str, names: list[str], value: str, visible: bool = True):
    """A preset dropdown and an editable preference text for one persona; its labels take the
    persona's colour (assets/style.css), the colour of the tokens it drafts."""
    with gr.Column(scale=5, visible=visible, min_width=200, elem_classes=["pj-persona", f"pj-persona-{label.lower()}"]
                   ) as column:
        preset = gr.Dropdown(names, value=value, label=f"Persona {label}", elem_id=f"persona-{label.lower()}")
        text = gr.Textbox(P.persona_text(value) if value else "", label=f"Preference {label}", lines=3,
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
        gr.Markdown(about.HEADER, elem_id="header")
        if access.public:
            gr.Markdown(" ".join(filter(None, (access.notice(), hosting.notice()))), elem_id="public-notice")
        record = gr.State(None)
        # How many personas are shown (2-4). A hidden number rather than a State, so API callers can set it.
        n_personas = raw(gr.Number(2, visible=False, precision=0, elem_id="n-personas"))
        front_state, truth, inference = gr.State(None), gr.State(None), gr.State(None)  # outside the tabs: they
        # hold no layout, and a State between two Tabs made Gradio 6.31 draw the later tabs' buttons twice

        # "wrap": on a phone every tab stays in sight (a menu would hide the ones a newcomer should find).
        # A tab's content enters the page when it is first opened; until then Gradio 6.31 keeps only a
        # component's last update (see `Studio.run`: its last update repeats the fit heatmap).
        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):
            # ================================================================ Compare: the lab
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                # Who (personas) and what (query), then Run, fit on a laptop's first screen; the model,
                # the methods and every secondary setting sit in the narrower column beside them.
                with gr.Row(equal_height=False, elem_id="setup"):
                    with gr.Column(scale=3, min_width=340, elem_id="setup-main"):
                        with gr.Row(equal_height=False, elem_id="personas-ab"):
                            _, persona_a, pref_a = persona_column("A", persona_names, pa)
                            swap_btn = gr.Button("⇄ Swap", scale=0, min_width=70, elem_id="swap-btn", size="sm")
                            _, persona_b, pref_b = persona_column("B", persona_names, pb)
                        with gr.Accordion("More personas (C, D)", open=False, elem_id="more-personas"):
                            with gr.Row():
                                add_btn = gr.Button("+ Add persona", size="sm", elem_id="add-persona")
                                remove_btn = gr.Button("− Remove persona", size="sm", elem_id="remove-persona")
                            with gr.Row(equal_height=False):
                                col_c, persona_c, pref_c = persona_column("C", persona_names, None, visible=False)
                                col_d, persona_d, pref_d = persona_column("D", persona_names, None, visible=False)
                        query = gr.Textbox(first_query, label="Query", lines=2, elem_id="query")
                        with gr.Accordion("Example queries", open=False, elem_id="examples"):
                            gr.Examples([[q] for q in queries], inputs=[query], cache_examples=False, label=None)
                        with gr.Row(elem_id="run-row"):
                            run_btn = gr.Button("Run", variant="primary", scale=3, elem_id="run-btn")
                            stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="stop-btn")
                        run_msg = gr.HTML("", elem_id="run-status")
                    with gr.Column(scale=2, min_width=300, elem_id="setup-side"):
                        model = raw(gr.Dropdown(
                            model_choices(access.models if access.public else None), value=model_id, label="Model",
                            allow_custom_value=not access.public, elem_id="model-select",
                            info=("The models this demo offers" if access.public else
                                  "A preset, or any Hugging Face id / local folder / .gguf path")))
                        with gr.Row(equal_height=False, elem_id="model-row"):
                            with gr.Column(scale=4, min_width=180):
                                model_msg = gr.HTML(studio.start_status(), elem_id="model-status")
                            load_btn = gr.Button("Load", scale=1, min_width=70, elem_id="load-btn")
                        pair = gr.Dropdown(list(data.pairs), value=first_pair, label="Ready-made pair",
                                           info="Fills personas A and B; edit the texts freely", elem_id="pair-select")
                        methods = raw(gr.CheckboxGroup(
                            lab.method_choices(2), value=list(lab.default_slots()), label="Methods to compare",
                            info="One panel per ticked method, all decoding at once with the same seed; each "
                                 "panel says what its method does",
                            elem_id="methods"))
                        with gr.Accordion("Decoding parameters", open=False, elem_id="parameters"):
                            roles = raw(gr.Radio([("rotate every block (Persona-judge)", "alternate"),
                                                  ("fixed: A drafts, B judges (Persona-judge-Base)", "fixed")],
                                                 value="alternate", label="Roles in the Persona-judge panel"))
                            with gr.Row():  # two knobs a row: the column is narrow, the list long
                                lam = raw(gr.Slider(1, 8, value=defaults.lam, step=1, label="λ: tokens drafted per block"))
                                max_new = raw(gr.Slider(8, 512, value=defaults.max_new_tokens, step=8,
                                                        label="Max new tokens", elem_id="max-new"))
                            with gr.Row():
                                seed = raw(gr.Number(0, label="Seed (empty = random)", precision=0, elem_id="seed"))
                                greedy = gr.Checkbox(defaults.greedy, label="Greedy (deterministic)")
                            with gr.Row():
                                temperature = raw(gr.Slider(0.05, 2.0, value=defaults.temperature, step=0.05,
                                                            label="Temperature"))
                                top_k = raw(gr.Slider(0, 100, value=defaults.top_k, step=1, label="Top-k (0 = off)"))
                            with gr.Row():
                                top_p = raw(gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p"))
                                repetition_penalty = raw(gr.Slider(
                                    1.0, 2.0, value=recommended.repetition_penalty, step=0.05,
                                    label="Repetition penalty (on the answer only; 1 = off)", elem_id="repetition-penalty"))
                            with gr.Row():
                                no_repeat = raw(gr.Slider(0, 8, value=recommended.no_repeat_ngram_size, step=1,
                                                          label="No-repeat n-gram size (0 = off)", elem_id="no-repeat"))
                                alpha = raw(gr.Slider(0.0, 3.0, value=0.0, step=0.1, label="Fusion α (0 = product "
                                                      "of experts)", elem_id="fusion-alpha"))
                            weights = gr.Textbox("", label="Fusion weights A:B:… (empty = equal)",
                                                 elem_id="fusion-weights")
                        with gr.Accordion("Model options", open=False, elem_id="model-options",
                                          visible=not access.public or bool(access.four_bit)):
                            four_bit = gr.Checkbox(False, label="4-bit (NF4, CPU or GPU)", elem_id="four-bit",
                                                   visible=not access.public or bool(access.four_bit),
                                                   info="A third of the memory. Slower on CPUs without AVX512-BF16 "
                                                        "(about 2× here); on a GPU, the way to fit 3B–8B models. "
                                                        "Applies at the next Load or Run.")

                # ---- one panel per method
                panel_columns, panel_html = [], []
                with gr.Row(equal_height=False, elem_id="panels"):
                    for slot in lab.slots():
                        slug = lab.slot_id(slot)
                        html_id = f"tokens-{slug}"
                        with gr.Column(min_width=300, visible=slot in lab.default_slots(), elem_id=f"panel-{slug}",
                                       elem_classes=["pj-panel"]) as column:
                            html = gr.HTML(render.panel_html(lab.slot_spec(slot).label, "", []), elem_id=html_id)
                        panel_columns.append(column)
                        panel_html.append(html)
                gr.HTML(render.legend_html(), elem_id="pj-legend")
                download = gr.DownloadButton("Download this run (JSON: every panel's text, spec, settings, trace, "
                                             "persona fit, front, inference)", visible=False, size="sm",
                                             elem_id="run-download")
                heatmap = gr.Plot(label="Persona-judge, block by block", elem_id="pj-heatmap")
                with gr.Row():
                    plot = gr.Plot(label="log(p/q) per token", elem_id="pj-plot")
                    acceptance = gr.Plot(label="Acceptance rate", elem_id="pj-acceptance")

            # ================================================================ Did it work?
            with gr.Tab("Did it work?", id="insight", elem_id="tab-insight"):
                gr.Markdown("### Persona fit and meters of every answer\n" + FIT_NOTE, elem_id="fit-note")
                answers = gr.HTML(render.answers_html(None), elem_id="answers-summary")
                fit_heatmap = gr.Plot(label="Persona fit per token", elem_id="fit-heatmap")
                with gr.Column(elem_id="front-section"):
                    gr.Markdown("### Which method served every persona best?\nSamples K answers per method ticked "
                                "on Compare, with its personas, query and settings (seeds shared across methods), "
                                "scores each under every persona, and plots one point per answer with each method's "
                                "mean and 95% interval. With two fit axes, up and to the right is better for both "
                                "personas; an axis can also be an independent meter (reading grade, words, VADER "
                                "sentiment) of each answer. The samples go into the run's download on Compare.")
                    with gr.Row():
                        front_k = raw(gr.Slider(1, MAX_SAMPLES, value=DEFAULT_SAMPLES, step=1,
                                                label="K: samples per method", elem_id="front-k"))
                        front_tokens = raw(gr.Slider(8, 256, value=DEFAULT_FRONT_TOKENS, step=8,
                                                     label="tokens per answer", elem_id="front-tokens"))
                        front_x = raw(gr.Dropdown(InsightHandlers.axis_choices(2), value="A",
                                                  label="x axis: fit or meter", elem_id="front-x"))
                        front_y = raw(gr.Dropdown(InsightHandlers.axis_choices(2), value="B",
                                                  label="y axis: fit or meter", elem_id="front-y"))
                    with gr.Row():
                        front_btn = gr.Button("Sample K per method", variant="primary", elem_id="front-btn")
                        front_stop = gr.Button("Stop sampling", variant="stop", elem_id="front-stop")
                    front_msg = gr.HTML("", elem_id="front-status")
                    front_plot = gr.Plot(label="Persona fit per answer", elem_id="fit-front")

            # ================================================================ Infer a persona
            with gr.Tab("Infer a persona", id="infer", elem_id="tab-infer"):
                gr.Markdown("### Which persona explains a user's choices?\nEach candidate persona scores "
                            "Σ [log p(chosen | prompt, persona) − log p(rejected | prompt, persona)] under the model "
                            "picked on Compare; the best one can become persona A or B there.")
                with gr.Row(equal_height=False):
                    infer_user = raw(gr.Dropdown(insight.user_choices(), value=None, label="A P-Soups user (bundled)",
                                                 elem_id="infer-user", scale=3))
                    with gr.Column(scale=2, min_width=260):
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
                    use_a = gr.Button("Use the best as persona A (on Compare)", size="sm", interactive=False,
                                      elem_id="infer-use-a")
                    use_b = gr.Button("Use the best as persona B (on Compare)", size="sm", interactive=False,
                                      elem_id="infer-use-b")

            # ================================================================ Judge capacity
            with gr.Tab("Judge capacity", id="capacity", elem_id="tab-capacity"):
                gr.Markdown("### Can this model tell two personas apart?\nScores a sample of the P-Soups "
                            "student/PhD preference pairs with the model picked on Compare: how often the "
                            "persona-prompted model prefers the answer written for that persona. Near 50% it is a "
                            "weak judge, and Persona-judge has little to work with.")
                with gr.Row(equal_height=False):
                    cap_n = raw(gr.Slider(10, 200, value=40, step=10, label="pairs to score", elem_id="capacity-n"))
                    cap_btn = gr.Button("Measure judge capacity", variant="primary", elem_id="capacity-btn")
                cap_out = gr.HTML("", elem_id="capacity-result")

            # ================================================================ About
            with gr.Tab("About", id="about", elem_id="tab-about"):
                gr.Markdown(about.METHOD, elem_id="about-method")
                gr.HTML(about.colours_html(), elem_id="about-colours")
                gr.Markdown(about.CITATION, elem_id="about-cite")

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
        # In the browser alone, before the run (Gradio 6.31 starts a click's later listeners only when the
        # run has ended): bring the panels into view and clear "Did it work?"'s table ...
        run_btn.click(None, None, answers, js=on_run_js(render.answers_html(None)), api_visibility="private")
        run_event = run_btn.click(
            on_gpu(studio.run, gpu_time.run_duration(studio.run)),
            [model, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
             top_k, top_p, max_new, seed, methods, n_personas, persona_c, pref_c, persona_d, pref_d, alpha, weights,
             repetition_penalty, no_repeat, record],
            [*panel_html, heatmap, plot, acceptance, download, run_msg, record, fit_heatmap],
            **model_event, api_name="run",
        )
        run_event.then(studio.status, [model, four_bit], model_msg, api_visibility="private")
        # ... which the run's record fills when it ends
        run_event.then(render.answers_html, record, answers, api_visibility="private")
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
    pass_skips_through()  # and without this every skipped output builds a component on the event loop
    return demo


def launch_kwargs() -> dict:
    return {"css": CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.exists() else None,
            "theme": gr.themes.Soft(), "state_session_capacity": SESSIONS}


if __name__ == "__main__":
    build_demo().launch(**launch_kwargs())
