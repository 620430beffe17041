"""What the app's events do, as methods of `Studio` (testable without a browser).

`app.py` builds the page and wires each event to one of these methods; the outputs of a method
are listed next to it, in the order the page passes its components. Every failure a visitor can
cause ends as a readable message in the page (`render.message_html`), never a traceback; model
output is escaped by `render`. The model is shared by every visitor (`ModelHolder`); results
are per visitor (returned, or kept in a `gr.State`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import gradio as gr

from ..engine.methods import method_named
from ..errors import PJudgeError
from ..evaluation.alignment import judge_capacity
from ..evaluation.fit import NOTE
from ..evaluation.meters import NOTE as METERS_NOTE
from ..evaluation.meters import measure
from ..presets import pair, pair_personas, persona_text
from . import charts, insight, lab, records, render
from .access import Access
from .form import MAX_PERSONAS, LabForm, number, read_form
from .models import ModelHolder, decoding_engine, describe, quantize_option, recommended_settings
from .zerogpu import GpuTime

UPDATE_EVERY_S = 0.25  # at most ~4 page updates per second while streaming (plus first tokens and the end)
PRELOADED_NOTE = "Each run borrows a GPU for the seconds it asks for, from the visitor's daily ZeroGPU quota."


def _about(slot: str) -> str:
    return lab.method_panel(slot).about


class Studio:
    """The app's event handlers around one shared `ModelHolder`."""

    def __init__(self, models: ModelHolder | None = None, access: Access | None = None, gpu: GpuTime | None = None):
        self.models = models or ModelHolder()
        self.access = access or Access()
        self.gpu = gpu or GpuTime(self.access)  # on ZeroGPU: the seconds each call asks for, and its limit
        self.fits = insight.FitScoring()  # finished panels' fits, scored together when visitors finish together

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
    def run(self, model_name, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy,
            temperature, top_k, top_p, max_new_tokens, seed, methods=None, n_personas=2,
            persona_c=None, pref_c="", persona_d=None, pref_d="", alpha=0.0, weights="",
            repetition_penalty=None, no_repeat_ngram_size=None, previous=None) -> Iterator[tuple]:
        """Every ticked method streams at once; each answer's persona fit appears as it finishes.
        Yields one value per output, in this order: one panel HTML per `lab.slots()`, heatmap,
        log-ratio plot, acceptance plot, download button, message, run record (gr.State), fit
        heatmap. `previous` is the last record (its front and inference are carried over)."""
        skip = gr.skip()

        def out(panels: dict | None = None, heatmap=skip, plot=skip, acceptance=skip, download=skip, message=skip,
                record=skip, fit_plot=skip) -> tuple:
            panels = panels or {}
            return (*[panels.get(slot, skip) for slot in lab.slots()], heatmap, plot, acceptance, download, message,
                    record, fit_plot)

        methods = lab.default_slots() if methods is None else methods
        with contextlib.ExitStack() as held:  # the model stays loaded until this run ends (Stop included)
            try:
                form = read_form(self.access, persona_a=persona_a, pref_a=pref_a, persona_b=persona_b, pref_b=pref_b,
                                 query=query, lam=lam, roles=roles, greedy=greedy, temperature=temperature,
                                 top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, methods=methods,
                                 n_personas=n_personas, persona_c=persona_c, pref_c=pref_c, persona_d=persona_d,
                                 pref_d=pref_d, alpha=alpha, weights=weights, repetition_penalty=repetition_penalty,
                                 no_repeat_ngram_size=no_repeat_ngram_size)
                names, preferences, settings, specs = form.names, form.preferences, form.settings, form.specs
                self.access.check_model(model_name, bool(four_bit))
                if not self.models.is_loaded(model_name, quantize_option(four_bit)):
                    yield out(message=render.message_html(f"Loading {model_name or 'the bundled model'} … "
                                                          "(first run only)", "info"))
                lm = held.enter_context(self.models.use(model_name, quantize_option(four_bit)))
                engine = decoding_engine(self.models, lm, self.access.engine_rows, self.gpu.zero_gpu)
                run = lab.LabRun(lm, query, preferences, specs, settings, engine=engine)
            except PJudgeError as exc:
                yield out(message=render.message_html(str(exc), "error"))
                return
            yield from self._stream(run, out, form, lm, query, names, preferences, specs, model_name, four_bit,
                                    previous)

    def _stream(self, run: lab.LabRun, out, form: LabForm, lm, query, names, preferences, specs, model_name,
                four_bit, previous) -> Iterator[tuple]:
        """The run's updates, from its first placeholder to its last panel (see `run`)."""
        fits: dict[str, tuple] = {}  # slot -> (Fit or None, reason), once its answer is finished
        meters: dict[str, dict] = {}  # slot -> the answer's independent meters, once it is finished

        def panel(slot: str, running: bool) -> str:
            p = run.panels[slot]
            fit = render.fit_html(*fits[slot], persona_names=names, model=lm.name) if slot in fits else ""
            return render.panel_html(p.spec.label, _about(slot), p.steps, running=running and not p.done,
                                     stats=p.result.stats if p.result else None, persona_names=names,
                                     elapsed=time.perf_counter() - run.started,
                                     extra=fit + render.meters_html(meters.get(slot)))

        def fit_figure():
            scored = {run.panels[slot].spec.label: fit for slot, (fit, _) in fits.items() if fit is not None}
            return charts.fit_heatmap_figure(scored, names, model=lm.name)

        placeholder = {slot: render.panel_html(run.panels[slot].spec.label, _about(slot), [], running=True)
                       for slot in specs}
        hidden = {slot: "" for slot in lab.slots() if slot not in specs}
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
                    yield self._finish(run, out, form, lm, query, panel, fits, meters, previous, fit_plot=fit_figure(),
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
            yield self._finish(run, out, form, lm, query, panel, fits, meters, previous, fit_plot=fit_figure())
        except PJudgeError as exc:
            yield out(message=render.message_html(str(exc), "error"))
        finally:  # Stop (GeneratorExit here) or an error: this run's rows stop decoding, nobody else's
            run.close()

    def _finish(self, run: lab.LabRun, out, form: LabForm, lm, query, panel, fits, meters, previous,
                fit_plot=None, stopped=None) -> tuple:
        """The run's last update; `stopped` is the message of a run its time limit ended. `fit_plot`
        (the fit heatmap) is sent again although it has not changed: on a tab the visitor has not
        opened yet, Gradio 6.31 forgets a plot's value when a later update skips it."""
        pj = next((p for p in run.panels.values() if method_named(p.spec.method).judged), None)
        panel_records = [records.panel_record(p.slot, p.spec.key, p.spec.label, p.result, p.steps, stopped=p.stopped)
                         for p in run.panels.values()]
        fit_record = {"note": NOTE, "unit": "nats per token", "model": lm.name,
                      "panels": {slot: fit.to_dict() if fit is not None else {"reason": reason}
                                 for slot, (fit, reason) in fits.items()}}
        record = records.lab_record(
            model=lm.describe(), query=query,
            personas={label: {"name": form.names[label], "text": text} for label, text in form.preferences.items()},
            settings=form.settings.to_dict(), panels=panel_records,
            extra={"fit": fit_record, "meters": {"note": METERS_NOTE, "panels": meters},
                   **records.carried_over(previous)})
        path = records.write_record(record)
        summary = ", ".join(f"{p.spec.label} {len(p.steps)} tokens" for p in run.panels.values())
        return out(
            {slot: panel(slot, False) for slot in run.panels},
            heatmap=charts.heatmap_figure(pj.steps) if pj else None,
            plot=charts.logratio_figure(pj.steps) if pj else None,
            acceptance=charts.acceptance_figure(pj.steps) if pj else None,
            download=gr.update(value=path, visible=True),
            message=stopped or render.message_html(f"Done: {summary}. Hover the tokens for details; "
                                                      "the Did it work? tab scores every answer.", "ok"),
            record=record, fit_plot=fit_plot)

    # ------------------------------------------------------------------ judge capacity
    def capacity(self, model_name, four_bit, n, progress=gr.Progress()):
        """-> capacity result HTML: can this model tell two personas apart?"""
        try:
            pairs = number(n, "The number of pairs", 40, whole=True)
            self.access.check_model(model_name, bool(four_bit))
            self.access.check_capacity(pairs)
            progress(0.0, desc="Loading the model …")
            with self.models.use(model_name, quantize_option(four_bit)) as lm:
                result = judge_capacity(lm, n=pairs, seed=0,
                                        progress=lambda done, total: progress((done, total), desc="Scoring pairs"))
        except PJudgeError as exc:
            return render.message_html(str(exc), "error")
        return render.message_html(capacity_text(lm.name, result), "ok")

    # ------------------------------------------------------------------ persona controls (no model)
    @staticmethod
    def persona_changed(name):
        """-> the preference text of a persona preset."""
        if not name:
            return gr.skip()
        try:
            return persona_text(name)
        except PJudgeError:
            return gr.skip()

    @staticmethod
    def pair_changed(name):
        """-> persona A, preference A, persona B, preference B."""
        try:
            (a, b), (text_a, text_b) = pair_personas(name), pair(name)
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

    @staticmethod
    def panels_visible(methods):
        """-> one visibility update per panel (in `lab.slots()` order)."""
        ticked = set(methods or [])
        return tuple(gr.update(visible=slot in ticked) for slot in lab.slots())

    @staticmethod
    def model_changed(model_id):
        """-> repetition penalty, no-repeat n-gram size: the model preset's recommended values."""
        settings = recommended_settings(model_id)
        return settings.repetition_penalty, settings.no_repeat_ngram_size


def capacity_text(name: str, res: dict) -> str:
    def pct(x):
        return "–" if x is None else f"{100 * x:.0f}%"

    low, high = res.get("low"), res.get("high")
    interval = f" (95% interval {pct(low)}–{pct(high)})" if low is not None and high is not None else ""
    parts = [f"{persona}: {pct(value.get('accuracy'))}" for persona, value in (res.get("by_persona") or {}).items()]
    per = f"; by persona: {', '.join(parts)}" if parts else ""
    return (f"{name}: alignment accuracy {pct(res.get('accuracy'))}{interval} on {res.get('n')} student/PhD "
            f"preference pairs{per}. Near 50% means the model barely tells the two personas apart, so it is a "
            "weak judge.")
