"""The Compare tab: personas, a query and methods in, one live panel per method out.

Who (personas) and what (query), then Run, fit on a laptop's first screen; the model, the methods
and every secondary setting sit in the narrower column beside them. Every ticked method streams at
once, as rows of one batched engine (`lab.LabRun`); each answer's persona fit and meters appear in
its panel as it finishes; Persona-judge's blocks are charted under the panels, and the run's record
is offered as a download; a share link fills the run's form in again (`ui.share`). Every failure a
visitor can cause ends as a readable message in the page (`render.message_html`), never a
traceback; model output is escaped by `render`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import gradio as gr

from ... import presets as P
from ...engine.methods import method_named
from ...engine.personas import MAX_PERSONAS
from ...engine.settings import DecodeSettings
from ...errors import InputError, PJudgeError
from ...evaluation.meters import NOTE as METERS_NOTE
from ...evaluation.meters import measure
from ...evaluation.self_judge.fit import NOTE
from .. import charts, following, insight, lab, records, render, share
from ..fields import raw
from ..form import FIELDS, LabForm, Values, read_form, takes_form
from ..models import (
    decoding_engine,
    describe,
    first_run,
    model_choices,
    model_queries,
    quantize_option,
    recommended_settings,
)
from ..page import Page, Tab
from ..serving import served
from ..stopping import Stoppable

UPDATE_EVERY_S = 0.25  # at most ~4 page updates per second while streaming (plus first tokens and the end)
PRELOADED_NOTE = "Each run borrows a GPU for the seconds it asks for, from the visitor's daily ZeroGPU quota."


def on_run_js(cleared: str) -> str:
    """What Run does in the browser: scroll to the panels unless their top is on screen, and return
    `cleared` (HTML) for "Did it work?"'s table."""
    return ("() => { const panels = document.getElementById('panels');"
            " if (panels && panels.getBoundingClientRect().top > window.innerHeight - 160)"
            " panels.scrollIntoView({behavior: 'smooth', block: 'start'});"
            f" return {json.dumps(cleared)}; }}")


# The share button hands the Python handler the address the visitor's browser shows (behind a Space's
# proxy too), in place of the link box's value; the run's record (a State) is read on the server.
SHARE_JS = "(record, box) => [record, window.location.href]"


def persona_column(label: str, names: list[str], value: str | None, visible: bool = True):
    """A preset dropdown and an editable preference text for one persona; its labels take the
    persona's colour (assets/style.css), the colour of the tokens it drafts."""
    with gr.Column(scale=5, visible=visible, min_width=200, elem_classes=["pj-persona", f"pj-persona-{label.lower()}"]
                   ) as column:
        preset = gr.Dropdown(names, value=value, label=f"Persona {label}", elem_id=f"persona-{label.lower()}")
        text = gr.Textbox(P.persona_text(value) if value else "", label=f"Preference {label}", lines=3,
                          elem_id=f"pref-{label.lower()}")
    return column, preset, text


class CompareTab(Tab):
    """The tab's layout, events and handlers (see the module docstring)."""

    def __init__(self, page: Page):
        super().__init__(page)
        self.fits = insight.FitScoring()  # finished panels' fits, scored together when visitors finish together
        self.slots = lab.slots()  # the panels, in page order: one output each

    # ------------------------------------------------------------------ layout
    def build(self) -> None:
        data = P.presets()
        persona_names = list(data.personas)
        model_id = self.page.deployment.default_model()
        first_pair, first_query, recommended = first_run(model_id)
        pa, pb = P.pair_personas(first_pair) if first_pair else (persona_names[0], persona_names[-1])
        defaults = DecodeSettings()
        form = {"n_personas": self.page.n_personas}
        with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
            with gr.Row(equal_height=False, elem_id="setup"):
                with gr.Column(scale=3, min_width=340, elem_id="setup-main"):
                    with gr.Row(equal_height=False, elem_id="personas-ab"):
                        _, form["persona_a"], form["pref_a"] = persona_column("A", persona_names, pa)
                        self.swap_btn = gr.Button("⇄ Swap", scale=0, min_width=70, elem_id="swap-btn", size="sm")
                        _, form["persona_b"], form["pref_b"] = persona_column("B", persona_names, pb)
                    with gr.Accordion("More personas (C, D)", open=False, elem_id="more-personas") as more:
                        self.more_personas = more
                        with gr.Row():
                            self.add_btn = gr.Button("+ Add persona", size="sm", elem_id="add-persona")
                            self.remove_btn = gr.Button("− Remove persona", size="sm", elem_id="remove-persona")
                        with gr.Row(equal_height=False):
                            self.col_c, form["persona_c"], form["pref_c"] = persona_column("C", persona_names, None,
                                                                                           visible=False)
                            self.col_d, form["persona_d"], form["pref_d"] = persona_column("D", persona_names, None,
                                                                                           visible=False)
                    form["query"] = gr.Textbox(first_query, label="Query", lines=2, elem_id="query")
                    with gr.Accordion("Example queries", open=False, elem_id="examples"):
                        gr.Examples([[q] for q in model_queries(model_id) or [first_query]], inputs=[form["query"]],
                                    cache_examples=False, label=None)
                    with gr.Row(elem_id="run-row"):
                        self.run_btn = gr.Button("Run", variant="primary", scale=3, elem_id="run-btn")
                        self.stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="stop-btn")
                    self.run_msg = gr.HTML("", elem_id="run-status")
                with gr.Column(scale=2, min_width=300, elem_id="setup-side"):
                    access = self.access
                    self.model = raw(gr.Dropdown(
                        model_choices(access.models if access.public else None), value=model_id, label="Model",
                        allow_custom_value=not access.public, elem_id="model-select",
                        info=("The models this demo offers" if access.public else
                              "A preset, or any Hugging Face id / local folder / .gguf path")))
                    with gr.Row(equal_height=False, elem_id="model-row"):
                        with gr.Column(scale=4, min_width=180):
                            self.model_msg = gr.HTML(self.start_status(), elem_id="model-status")
                        self.load_btn = gr.Button("Load", scale=1, min_width=70, elem_id="load-btn")
                    self.pair = gr.Dropdown(list(data.pairs), value=first_pair, label="Ready-made pair",
                                            info=" ".join(filter(None, ("Fills personas A and B; edit the texts freely.",
                                                                        following.picker_note(model_id)))),
                                            elem_id="pair-select")
                    form["methods"] = raw(gr.CheckboxGroup(
                        lab.method_choices(2), value=list(lab.default_slots()), label="Methods to compare",
                        info="One panel per ticked method, all decoding at once with the same seed; each "
                             "panel says what its method does",
                        elem_id="methods"))
                    with gr.Accordion("Decoding parameters", open=False, elem_id="parameters"):
                        form["roles"] = raw(gr.Radio([("rotate every block (Persona-judge)", "alternate"),
                                                      ("fixed: A drafts, B judges (Persona-judge-Base)", "fixed")],
                                                     value="alternate", label="Roles in the Persona-judge panel"))
                        with gr.Row():  # two knobs a row: the column is narrow, the list long
                            form["lam"] = raw(gr.Slider(1, 8, value=defaults.lam, step=1,
                                                        label="λ: tokens drafted per block"))
                            form["max_new_tokens"] = raw(gr.Slider(8, 512, value=defaults.max_new_tokens, step=8,
                                                                   label="Max new tokens", elem_id="max-new"))
                        with gr.Row():
                            form["seed"] = raw(gr.Number(0, label="Seed (empty = random)", precision=0,
                                                         elem_id="seed"))
                            form["greedy"] = gr.Checkbox(defaults.greedy, label="Greedy (deterministic)")
                        with gr.Row():
                            form["temperature"] = raw(gr.Slider(0.05, 2.0, value=defaults.temperature, step=0.05,
                                                                label="Temperature"))
                            form["top_k"] = raw(gr.Slider(0, 100, value=defaults.top_k, step=1, label="Top-k (0 = off)"))
                        with gr.Row():
                            form["top_p"] = raw(gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p"))
                            form["repetition_penalty"] = raw(gr.Slider(
                                1.0, 2.0, value=recommended.repetition_penalty, step=0.05,
                                label="Repetition penalty (on the answer only; 1 = off)", elem_id="repetition-penalty"))
                        with gr.Row():
                            form["no_repeat_ngram_size"] = raw(gr.Slider(
                                0, 8, value=recommended.no_repeat_ngram_size, step=1,
                                label="No-repeat n-gram size (0 = off)", elem_id="no-repeat"))
                            form["alpha"] = raw(gr.Slider(0.0, 3.0, value=0.0, step=0.1,
                                                          label="Fusion α (0 = product of experts)",
                                                          elem_id="fusion-alpha"))
                        form["weights"] = gr.Textbox("", label="Fusion weights A:B:… (empty = equal)",
                                                     elem_id="fusion-weights")
                        form["reproducible"] = raw(gr.Checkbox(
                            False, label="Reproducible", elem_id="reproducible",
                            info="Each answer in forwards of its own: its tokens never depend on other visitors' "
                                 "answers decoding beside it (slower when many decode at once)"))
                    offered = not access.public or bool(access.four_bit)
                    with gr.Accordion("Model options", open=False, elem_id="model-options", visible=offered):
                        self.four_bit = gr.Checkbox(False, label="4-bit (NF4, CPU or GPU)", elem_id="four-bit",
                                                    visible=offered,
                                                    info="A third of the memory. Slower on CPUs without AVX512-BF16 "
                                                         "(about 2× here); on a GPU, the way to fit 3B–8B models. "
                                                         "Applies at the next Load or Run.")

            # ---- one panel per method
            self.panel_columns, self.panel_html = [], []
            with gr.Row(equal_height=False, elem_id="panels"):
                for slot in self.slots:
                    slug = lab.slot_id(slot)
                    with gr.Column(min_width=300, visible=slot in lab.default_slots(), elem_id=f"panel-{slug}",
                                   elem_classes=["pj-panel"]) as column:
                        html = gr.HTML(render.panel_html(lab.slot_spec(slot).label, "", []), elem_id=f"tokens-{slug}")
                    self.panel_columns.append(column)
                    self.panel_html.append(html)
            gr.HTML(render.legend_html(), elem_id="pj-legend")
            self.download = gr.DownloadButton("Download this run (JSON: every panel's text, spec, settings, trace, "
                                              "persona fit, front, inference)", visible=False, size="sm",
                                              elem_id="run-download")
            with gr.Row(equal_height=True, elem_id="share-row"):
                self.share_btn = gr.Button("Share link", size="sm", scale=0, min_width=130, interactive=False,
                                           elem_id="share-btn")
                self.share_box = gr.Textbox("", label="Link to this run's form and seed", buttons=["copy"],
                                            interactive=False, visible=False, scale=5, elem_id="share-link")
            self.share_msg = gr.HTML("", elem_id="share-status")
            self.heatmap = gr.Plot(label="Persona-judge, block by block", elem_id="pj-heatmap")
            with gr.Row():
                self.plot = gr.Plot(label="log(p/q) per token", elem_id="pj-plot")
                self.acceptance = gr.Plot(label="Acceptance rate", elem_id="pj-acceptance")
        self.form = form

    def form_inputs(self, fields=FIELDS) -> list:
        """The form's components, in the order of `fields` (what a handler `takes_form` reads)."""
        return [self.form[f.name] for f in fields]

    # ------------------------------------------------------------------ events
    def wire(self) -> None:
        page, form = self.page, self.form
        personas = [(form[f"persona_{x}"], form[f"pref_{x}"]) for x in "abcd"]
        for preset, text in personas:
            preset.input(self.persona_changed, preset, text, api_visibility="private")
        ab = [form["persona_a"], form["pref_a"], form["persona_b"], form["pref_b"]]
        self.pair.input(self.pair_changed, self.pair, ab, api_visibility="private")
        self.swap_btn.click(self.swap, ab, ab, api_visibility="private")
        count_outputs = [page.n_personas, self.col_c, self.col_d, form["methods"]]
        self.add_btn.click(lambda n, m: self.persona_count(min(MAX_PERSONAS, n + 1), m), [page.n_personas,
                           form["methods"]], count_outputs, api_visibility="private")
        self.remove_btn.click(lambda n, m: self.persona_count(max(2, n - 1), m), [page.n_personas, form["methods"]],
                              count_outputs, api_visibility="private")
        form["methods"].change(self.panels_visible, form["methods"], self.panel_columns, api_visibility="private")
        # On the visitor's pick only (`input`): a share link that restores the model keeps its own settings.
        self.model.input(self.model_changed, self.model, [form["repetition_penalty"], form["no_repeat_ngram_size"]],
                         api_visibility="private")
        # Load needs no GPU call: on ZeroGPU it only reports what start-up loaded.
        self.load_btn.click(served(self.load), [self.model, self.four_bit], self.model_msg, **page.model_event,
                            api_name="load")
        # In the browser alone, before the run (Gradio 6.31 starts a click's later listeners only when the
        # run has ended): bring the panels into view and clear "Did it work?"'s table ...
        answers = page.did_it_work.answers
        self.run_btn.click(None, None, answers, js=on_run_js(render.answers_html(None)), api_visibility="private")
        stoppable = Stoppable()
        run_event = self.run_btn.click(
            stoppable.wrap(page.on_gpu(self.run, self.gpu.run_duration)),
            [self.model, self.four_bit, *self.form_inputs(), page.record],
            [*self.panel_html, self.heatmap, self.plot, self.acceptance, self.download, self.run_msg, page.record,
             page.did_it_work.fit_heatmap],
            **page.model_event, api_name="run")
        run_event.then(self.status, [self.model, self.four_bit], self.model_msg, api_visibility="private")
        # ... which the run's record fills when it ends
        run_event.then(render.answers_html, page.record, answers, api_visibility="private")
        # A finished run can be shared: its record holds its form and seed (`share`)
        run_event.then(self.share_ready, page.record, [self.share_btn, self.share_box, self.share_msg],
                       api_visibility="private")
        self.share_btn.click(self.share_link, [page.record, self.share_box], [self.share_box, self.share_msg],
                             js=SHARE_JS, api_visibility="private")
        if page.blocks is not None:  # a share link in the address fills the form in when the page opens
            page.blocks.load(self.restore, None, self.restore_outputs(), api_visibility="private",
                             show_progress="hidden", concurrency_limit=None)
        self.stop_btn.click(None, cancels=[run_event])  # the cancellation first: `Stoppable.stop` awaits it
        self.stop_btn.click(stoppable.stop, None, self.run_msg, api_visibility="private", concurrency_limit=None)

    # ------------------------------------------------------------------ model
    def start_status(self) -> str:
        """-> the model status HTML the page opens with."""
        if self.models.preloaded:
            return render.message_html(f"Loaded at start-up: {', '.join(self.models.names())}. {PRELOADED_NOTE}",
                                       "ok")
        return render.message_html("No model loaded yet; it loads on Load or on the first Run.", "info")

    def load(self, name, four_bit, progress=gr.Progress()):
        """-> model status HTML."""
        progress(0.1, desc=f"Loading {name or 'the bundled model'} …")
        started = time.perf_counter()
        try:
            self.access.check_model(name, bool(four_bit))
            lm = self.models.get(name, quantize_option(four_bit))
        except PJudgeError as exc:
            return render.message_html(str(exc), "error")
        except Exception as exc:  # keep the page readable even for unexpected failures
            return render.message_html(f"Could not load {name!r}: {type(exc).__name__}: {exc}", "error")
        progress(1.0)
        if self.models.preloaded:
            return render.message_html(f"{describe(lm)}, loaded at start-up. {PRELOADED_NOTE}", "ok")
        return render.message_html(f"{describe(lm)} ({time.perf_counter() - started:.1f} s)", "ok")

    def status(self, model_name=None, four_bit=False):
        """-> model status HTML after a run (the run may have loaded the model)."""
        lm = self.models.loaded(model_name, quantize_option(four_bit))
        return render.message_html(describe(lm), "ok") if lm else gr.skip()

    # ------------------------------------------------------------------ the lab
    @takes_form()
    def run(self, model_name, four_bit, form, previous=None) -> Iterator[tuple]:
        """Every ticked method streams at once; each answer's persona fit appears as it finishes.
        Yields one value per output, in this order: one panel HTML per slot (`lab.slots()`), heatmap,
        log-ratio plot, acceptance plot, download button, message, run record (gr.State), fit
        heatmap. `previous` is the last record (its front and inference are carried over)."""
        skip = gr.skip()

        def out(panels: dict | None = None, heatmap=skip, plot=skip, acceptance=skip, download=skip, message=skip,
                record=skip, fit_plot=skip) -> tuple:
            panels = panels or {}
            return (*[panels.get(slot, skip) for slot in self.slots], heatmap, plot, acceptance, download, message,
                    record, fit_plot)

        with contextlib.ExitStack() as held:  # the model stays loaded until this run ends (Stop included)
            try:
                lab_form = read_form(self.access, form)
                self.access.check_model(model_name, bool(four_bit))
                if not self.models.is_loaded(model_name, quantize_option(four_bit)):
                    yield out(message=render.message_html(f"Loading {model_name or 'the bundled model'} … "
                                                          "(first run only)", "info"))
                lm = held.enter_context(self.models.use(model_name, quantize_option(four_bit)))
                engine = decoding_engine(self.models, lm, self.access.engine_rows, self.gpu.zero_gpu)
                run = lab.LabRun(lm, form["query"], lab_form.preferences, lab_form.specs, lab_form.settings,
                                 engine=engine)
            except PJudgeError as exc:
                yield out(message=render.message_html(str(exc), "error"))
                return
            shared = share.run_form(model_name, four_bit, form, run.settings.seed, lm.describe())
            yield from self._stream(run, out, lab_form, lm, form["query"], model_name, four_bit, previous, shared)

    def _stream(self, run: lab.LabRun, out, form: LabForm, lm, query, model_name, four_bit,
                previous, shared: dict) -> Iterator[tuple]:
        """The run's updates, from its first placeholder to its last panel (see `run`)."""
        names, preferences, specs = form.names, form.preferences, form.specs
        fits: dict[str, tuple] = {}  # slot -> (Fit or None, reason), once its answer is finished
        meters: dict[str, dict] = {}  # slot -> the answer's independent meters, once it is finished

        def panel(slot: str, running: bool) -> str:
            p = run.panels[slot]
            fit = render.fit_html(*fits[slot], persona_names=names, model=lm.name) if slot in fits else ""
            return render.panel_html(p.spec.label, lab.method_panel(slot).about, p.steps,
                                     running=running and not p.done, stats=p.result.stats if p.result else None,
                                     persona_names=names, elapsed=time.perf_counter() - run.started,
                                     extra=fit + render.meters_html(meters.get(slot)))

        def fit_figure():
            scored = {run.panels[slot].spec.label: fit for slot, (fit, _) in fits.items() if fit is not None}
            return charts.fit_heatmap_figure(scored, names, model=lm.name)

        placeholder = {slot: render.panel_html(run.panels[slot].spec.label, lab.method_panel(slot).about, [],
                                               running=True) for slot in specs}
        hidden = {slot: "" for slot in self.slots if slot not in specs}
        running = render.message_html(f"Running {len(specs)} method{'s' if len(specs) > 1 else ''} on {lm.name} …",
                                      "info")
        yield out({**hidden, **placeholder}, heatmap=None, plot=None, acceptance=None,
                  download=gr.update(visible=False), message=running, record=None, fit_plot=None)
        try:
            last, changed, waited = 0.0, set(), False
            limit = self.gpu.limit(self.gpu.run(model_name, four_bit, form))
            for slot in run:
                if limit is not None and time.perf_counter() - run.started > limit:
                    run.close()  # before the call's time runs out: what was decoded is kept and downloadable
                    yield self._finish(run, out, form, lm, query, panel, fits, meters, previous, shared,
                                       fit_plot=fit_figure(),
                                       stopped=render.message_html(
                        f"Stopped after {limit:.0f} s: this public demo limits each run so that others get a turn. "
                        "Lower max new tokens or tick fewer methods.", "error"))
                    return
                if slot is None:  # nothing decided for a while: say why, and let a Stop through
                    ahead = run.waiting
                    if ahead:
                        waited = True
                        yield out(message=render.message_html(
                            f"Waiting for a free row: {run.engine.rows} answers decode at once for all visitors; "
                            f"{ahead - 1} other requests are ahead of this run's.", "info"))
                    else:
                        yield out()
                    continue
                if waited:
                    waited = False
                    yield out(message=running)
                changed.add(slot)
                p = run.panels[slot]
                if p.result is not None and slot not in fits:  # just finished: score it while the others go on
                    fits[slot] = self.fits.fit(lm, query, preferences, p.result)
                    meters[slot] = measure(p.result.text)
                    last = time.perf_counter()
                    yield out({s: panel(s, True) for s in changed}, fit_plot=fit_figure())
                    changed = set()
                    continue
                first_token = len(p.steps) == 1 and not p.done
                now = time.perf_counter()
                if first_token or now - last >= UPDATE_EVERY_S:
                    last = now
                    yield out({s: panel(s, True) for s in changed})
                    changed = set()
            yield self._finish(run, out, form, lm, query, panel, fits, meters, previous, shared,
                               fit_plot=fit_figure())
        except PJudgeError as exc:
            yield out(message=render.message_html(str(exc), "error"))
        finally:  # Stop (GeneratorExit here) or an error: this run's rows stop decoding, nobody else's
            run.close()

    def _finish(self, run: lab.LabRun, out, form: LabForm, lm, query, panel, fits, meters, previous, shared: dict,
                fit_plot=None, stopped=None) -> tuple:
        """The run's last update; `shared` is the run's form for its share link (`share.run_form`),
        `stopped` the message of a run its time limit ended. `fit_plot` (the fit heatmap) is sent
        again although it has not changed: on a tab the visitor has not opened yet, Gradio 6.31
        forgets a plot's value when a later update skips it."""
        blocks = next((p for p in run.panels.values() if method_named(p.spec.method).judged), None)
        panel_records = [records.panel_record(p.slot, p.spec.key, p.spec.label, p.result, p.steps, stopped=p.stopped)
                         for p in run.panels.values()]
        fit_record = {"note": NOTE, "unit": "nats per token", "model": lm.name,
                      "panels": {slot: fit.to_dict() if fit is not None else {"reason": reason}
                                 for slot, (fit, reason) in fits.items()}}
        record = records.lab_record(
            model=lm.describe(), query=query,
            personas={label: {"name": form.names[label], "text": text} for label, text in form.preferences.items()},
            settings=run.settings.to_dict(), panels=panel_records,
            extra={"form": shared, "fit": fit_record, "meters": {"note": METERS_NOTE, "panels": meters},
                   **records.carried_over(previous)})
        path = records.write_record(record)
        summary = ", ".join(f"{p.spec.label} {len(p.steps)} tokens" for p in run.panels.values())
        mode = " (reproducible: every answer in forwards of its own)" if form.settings.reproducible else ""
        return out(
            {slot: panel(slot, False) for slot in run.panels},
            heatmap=charts.heatmap_figure(blocks.steps) if blocks else None,
            plot=charts.logratio_figure(blocks.steps) if blocks else None,
            acceptance=charts.acceptance_figure(blocks.steps) if blocks else None,
            download=gr.update(value=path, visible=True),
            message=stopped or render.message_html(f"Done: {summary}{mode}. Hover the tokens for details; "
                                                      "the Did it work? tab scores every answer.", "ok"),
            record=record, fit_plot=fit_plot)

    # ------------------------------------------------------------------ persona controls (no model)
    @staticmethod
    def persona_changed(name):
        """-> the preference text of a persona preset."""
        if not name:
            return gr.skip()
        try:
            return P.persona_text(name)
        except PJudgeError:
            return gr.skip()

    @staticmethod
    def pair_changed(name):
        """-> persona A, preference A, persona B, preference B."""
        try:
            (a, b), (text_a, text_b) = P.pair_personas(name), P.pair(name)
        except PJudgeError:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return a, text_a, b, text_b

    @staticmethod
    def swap(persona_a, pref_a, persona_b, pref_b):
        return persona_b, pref_b, persona_a, pref_a

    @staticmethod
    def persona_count(count, methods):
        """-> count, persona C column, persona D column, methods (choices and value)."""
        count = max(2, min(MAX_PERSONAS, int(count)))
        choices = lab.method_choices(count)
        allowed = {slot for _, slot in choices}
        return (count, gr.update(visible=count >= 3), gr.update(visible=count >= 4),
                gr.update(choices=choices, value=[m for m in (methods or []) if m in allowed]))

    def panels_visible(self, methods):
        """-> one visibility update per panel (in page order)."""
        ticked = set(methods or [])
        return tuple(gr.update(visible=slot in ticked) for slot in self.slots)

    @staticmethod
    def model_changed(model_id):
        """-> repetition penalty, no-repeat n-gram size: the model preset's recommended values."""
        settings = recommended_settings(model_id)
        return settings.repetition_penalty, settings.no_repeat_ngram_size

    # ------------------------------------------------------------------ share links (no model)
    @staticmethod
    def share_ready(record):
        """-> share button (usable once a run has finished), link box (an earlier run's link cleared),
        share message."""
        ready = isinstance(record, dict) and isinstance(record.get("form"), dict)
        return gr.update(interactive=ready), gr.update(value="", visible=False), ""

    @staticmethod
    def share_link(record, location):
        """-> link box, share message: the link of the run in `record`, on the page at `location`
        (the address the visitor's browser shows; `SHARE_JS`)."""
        try:
            url = share.link(location, record.get("form") if isinstance(record, dict) else None)
        except InputError as exc:
            return gr.update(value="", visible=False), render.message_html(str(exc), "error")
        seed = record["form"]["fields"].get("seed")
        return (gr.update(value=url, visible=True),
                render.message_html(f"The link holds this run's form and seed ({seed}); opening it fills them in. "
                                    f"{share.NOTE}", "ok"))

    def restore_outputs(self) -> list:
        """What a share link fills in (`restore`'s outputs, in order)."""
        return [*self.form_inputs(), self.model, self.four_bit, self.col_c, self.col_d, self.more_personas,
                self.run_msg]

    def restore(self, request: gr.Request):
        """-> `restore_outputs()`: the form a share link in the page's address carries (validated as a
        form typed in), or skips and a message (a bad link, or a value this deployment refuses)."""
        params = dict(request.query_params) if request is not None else {}
        return self.restored(params)

    def restored(self, params: Values):
        """`restore` for the query parameters `params` ({name: value})."""
        skip = gr.skip()
        try:
            shared = share.restore(self.access, params)
        except InputError as exc:
            return (*[skip] * (len(FIELDS) + 5), render.message_html(str(exc), "error"))
        if shared is None:
            return (skip,) * (len(FIELDS) + 6)
        values, count = dict(shared.values), shared.values["n_personas"]
        values["methods"] = gr.update(choices=lab.method_choices(count), value=values["methods"])
        return (*[values[f.name] for f in FIELDS], shared.model, shared.four_bit, gr.update(visible=count >= 3),
                gr.update(visible=count >= 4), gr.update(open=True) if count > 2 else skip,
                render.message_html(shared.note(), "info"))
