"""The "Did it work?" tab: does the model follow these personas at all, did each persona get what it
asked for, and which method served them all?

  * first, whether the current model follows each persona at all (`ui.following`): from the table
    shipped for the model when there is one (updated as the model and texts change; no model runs),
    or measured on the current query on demand ("Measure on this query");
  * the last run's answers side by side: each one's persona fit under every persona (the model's
    own opinion, `evaluation.fit`) and independent meters (reading grade, words, sentiment), from
    the run's record; and the fit per token, as a heatmap (the Compare tab's run fills both);
  * the front: K sampled answers per method ticked on Compare, with its personas, query and
    settings, each scored under every persona, plotted one point per answer with each method's mean
    and 95% interval (an axis may be a meter instead of a fit).
Every failure a visitor can cause is a message in the page; model output is escaped by `render`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import gradio as gr

from ... import presets as P
from ...engine.personas import LABELS, MAX_PERSONAS
from ...errors import InputError, PJudgeError
from ...evaluation.meters import METERS
from ...evaluation.runs.compare import stream_compare
from ...evaluation.self_judge.fit import NOTE
from .. import charts, following, records, render
from ..fields import raw
from ..form import FRONT_FIELDS, number, read_form, takes_form
from ..models import decoding_engine, first_run, quantize_option
from ..page import Tab
from ..stopping import Stoppable

FIT_NOTE = ("When an answer finishes, it is scored under every persona: per token, log p(token | query, persona) − "
            "log p(token | query), in nats. Blue: that persona made the model more willing to write the token; red: "
            "less. The scorer is the same model that wrote the answers (each panel names it), so this is its own "
            "opinion (partly circular), not a human judgement. Under it, independent meters that no language model "
            "computes (English only): Flesch–Kincaid grade (textstat), words, VADER sentiment from −1 to +1, and words per "
            "line (short in verse).")
FOLLOWS_NOTE = ("A method can only steer where the model's next-token distribution moves with a persona's text. "
                "For each persona: how far it moves along answers written with no preference (KL, nats per token), "
                "against a placebo preference of the same length that asks for nothing. A persona not clearly "
                "beyond the placebo is not followed by this model, whatever the method.")
DEFAULT_SAMPLES = 4
DEFAULT_FRONT_TOKENS = 64  # short answers: a front of 4 samples x 2 methods takes about half a minute on a CPU
MAX_SAMPLES = 16
UPDATE_EVERY_S = 0.25  # the progress bar moves at most ~4 times per second


class DidItWorkTab(Tab):
    """The tab's layout, events and handlers (see the module docstring)."""

    # ------------------------------------------------------------------ layout
    def build(self) -> None:
        with gr.Tab("Did it work?", id="insight", elem_id="tab-insight"):
            with gr.Column(elem_id="follows-section"):
                gr.Markdown("### Does this model follow these personas?\n" + FOLLOWS_NOTE, elem_id="follows-note")
                self.follows = gr.HTML(self.first_follows(), elem_id="follows")
                self.follows_btn = gr.Button("Measure on this query", size="sm", elem_id="follows-btn")
            gr.Markdown("### Persona fit and meters of every answer\n" + FIT_NOTE, elem_id="fit-note")
            self.answers = gr.HTML(render.answers_html(None), elem_id="answers-summary")
            self.fit_heatmap = gr.Plot(label="Persona fit per token", elem_id="fit-heatmap")
            with gr.Column(elem_id="front-section"):
                gr.Markdown("### Which method served every persona best?\nSamples K answers per method ticked "
                            "on Compare, with its personas, query and settings (seeds shared across methods), "
                            "scores each under every persona, and plots one point per answer with each method's "
                            "mean and 95% interval. With two fit axes, up and to the right is better for both "
                            "personas; an axis can also be an independent meter (reading grade, words, VADER "
                            "sentiment) of each answer. The samples go into the run's download on Compare.")
                with gr.Row():
                    self.front_k = raw(gr.Slider(1, MAX_SAMPLES, value=DEFAULT_SAMPLES, step=1,
                                                 label="K: samples per method", elem_id="front-k"))
                    self.front_tokens = raw(gr.Slider(8, 256, value=DEFAULT_FRONT_TOKENS, step=8,
                                                      label="tokens per answer", elem_id="front-tokens"))
                    self.front_x = raw(gr.Dropdown(self.axis_choices(2), value="A", label="x axis: fit or meter",
                                                   elem_id="front-x"))
                    self.front_y = raw(gr.Dropdown(self.axis_choices(2), value="B", label="y axis: fit or meter",
                                                   elem_id="front-y"))
                with gr.Row():
                    self.front_btn = gr.Button("Sample K per method", variant="primary", elem_id="front-btn")
                    self.front_stop = gr.Button("Stop sampling", variant="stop", elem_id="front-stop")
                self.front_msg = gr.HTML("", elem_id="front-status")
                self.front_plot = gr.Plot(label="Persona fit per answer", elem_id="fit-front")

    # ------------------------------------------------------------------ events
    def wire(self) -> None:
        page, compare = self.page, self.page.compare
        texts = [compare.model, page.n_personas, *(compare.form[f"pref_{x}"] for x in "abcd")]
        for component in texts:  # the shipped table's sentences follow the model and the texts (no model runs)
            component.change(self.known_follows, texts, self.follows, api_visibility="private",
                             show_progress="hidden")
        self.follows_btn.click(page.on_gpu(self.measure_follows, self.gpu.follows_duration),
                               [compare.model, compare.four_bit, *compare.form_inputs(FRONT_FIELDS)], self.follows,
                               **page.model_event, api_name="follows")
        stoppable = Stoppable()
        front_event = self.front_btn.click(
            stoppable.wrap(page.on_gpu(self.front, self.gpu.front_duration)),
            [compare.model, compare.four_bit, *compare.form_inputs(FRONT_FIELDS), self.front_k, self.front_tokens,
             self.front_x, self.front_y, page.record, compare.form["reproducible"]],
            [self.front_plot, self.front_msg, page.front, compare.download, page.record], **page.model_event,
            api_name="front")
        self.front_stop.click(None, cancels=[front_event])  # the cancellation first: `Stoppable.stop` awaits it
        self.front_stop.click(stoppable.stop, None, self.front_msg, api_visibility="private", concurrency_limit=None)
        for axis in (self.front_x, self.front_y):
            axis.input(self.front_axes, [page.front, self.front_x, self.front_y], self.front_plot,
                       api_visibility="private")
        page.n_personas.change(self.axes_choices, page.n_personas, [self.front_x, self.front_y],
                               api_visibility="private")

    # ------------------------------------------------------------------ handlers
    def first_follows(self) -> str:
        """The section as the page opens: the default model and pair, from the shipped table."""
        model_id = self.page.deployment.default_model()
        pair, _, _ = first_run(model_id)
        texts = P.pair(pair) if pair else ()
        return self.known_follows(model_id, 2, *texts)

    @staticmethod
    def known_follows(model_name, n_personas, *texts) -> str:
        """-> the section from the table shipped for the model (no model runs)."""
        count = max(2, min(MAX_PERSONAS, int(n_personas or 2)))
        preferences = {label: text for label, text in zip(LABELS[:count], texts) if isinstance(text, str) and text.strip()}
        sentences = following.known(model_name, preferences)
        return render.follows_html(sentences, following.table_note(model_name) if sentences else "")

    @takes_form(FRONT_FIELDS)
    def measure_follows(self, model_name, four_bit, form) -> str:
        """-> the section measured on the current query: KL against a placebo (`following.measure`)."""
        try:
            lab_form = read_form(self.access, {**form, "max_new_tokens": following.TOKENS})
            self.access.check_model(model_name, bool(four_bit))
            with self.models.use(model_name, quantize_option(four_bit)) as lm:
                result = following.measure(lm, form["query"], lab_form.preferences, lab_form.settings)
        except PJudgeError as exc:
            return render.message_html(str(exc), "error")
        return render.follows_html(following.measured_sentences(result, following.short_name(model_name, lm.name)),
                                   following.sample_note(result))

    @takes_form(FRONT_FIELDS)
    def front(self, model_name, four_bit, form, samples, tokens, x, y, record, reproducible=False,
              progress=gr.Progress()) -> Iterator[tuple]:
        """Sample K answers per ticked method and score each under every persona. Yields: front
        plot, front summary HTML, front result (gr.State), download button, run record (gr.State)."""
        skip = gr.skip()
        with contextlib.ExitStack() as held:  # the model stays loaded until the front ends (Stop included)
            try:
                k = number(samples, "Samples per method", DEFAULT_SAMPLES, whole=True)
                if not 1 <= k <= MAX_SAMPLES:
                    raise InputError(f"Samples per method must be between 1 and {MAX_SAMPLES}; got {k}.")
                lab_form = read_form(self.access, {
                    **form, "max_new_tokens": number(tokens, "Tokens per answer", DEFAULT_FRONT_TOKENS, whole=True),
                    "reproducible": reproducible})
                charts.check_axes(lab_form.preferences, x, y)  # before the model loads
                self.access.check_model(model_name, bool(four_bit))
                progress(0.0, desc="Loading the model …")
                lm = held.enter_context(self.models.use(model_name, quantize_option(four_bit)))
                engine = decoding_engine(self.models, lm, self.access.engine_rows, self.gpu.zero_gpu)
                updates = stream_compare(lm, form["query"], lab_form.preferences, list(lab_form.specs.values()), k,
                                         lab_form.settings, every_token=True, engine=engine)
            except PJudgeError as exc:
                yield None, render.message_html(str(exc), "error"), skip, skip, skip
                return
            total = k * len(lab_form.specs)
            yield None, render.message_html(f"Sampling {total} answers of {lab_form.settings.max_new_tokens} "
                                            "tokens …", "info"), skip, skip, skip
            started, shown, result = time.perf_counter(), 0.0, None
            limit = self.gpu.limit(self.gpu.front(model_name, four_bit, lab_form, k))
            try:
                for update in updates:
                    if limit is not None and time.perf_counter() - started > limit and update["done"] < total:
                        # Before the call's time runs out: the answers finished so far go into the record.
                        yield skip, render.message_html(
                            f"Stopped after {limit:.0f} s: this public demo limits each run so that others get a turn. "
                            "Sample fewer answers or shorter ones.", "error") + (
                            render.front_summary_html(result) if result else ""), skip, skip, skip
                        break
                    if update["result"] is None:
                        # A token of every answer in flight. Yielding (nothing) after every step is what lets
                        # Stop end the run at once: Gradio stops asking for the next one.
                        if time.perf_counter() - shown >= UPDATE_EVERY_S:
                            shown = time.perf_counter()
                            progress((update["done"] + update["partial"]) / total, desc="Sampling and scoring answers")
                        yield skip, skip, skip, skip, skip
                        continue
                    result = update["result"]
                    progress((update["done"], total), desc="Sampling and scoring answers")
                    done = update["done"] == total
                    status = (f"{update['done']} of {total} answers, {time.perf_counter() - started:.0f} s. "
                              + ("Done. " if done else "") + NOTE)
                    yield (charts.front_figure(result, x, y), render.message_html(status, "ok" if done else "info")
                           + render.front_summary_html(result), result, skip, skip)
            except PJudgeError as exc:
                yield skip, render.message_html(str(exc), "error"), skip, skip, skip
                return
            finally:  # Stop: the generator is closed at its next token (or an error): no more forwards
                updates.close()
            if result is not None:
                record = records.with_section(record, "front", result, model=lm.describe())
                yield skip, skip, skip, gr.update(value=records.write_record(record), visible=True), record

    @staticmethod
    def axis_choices(n_personas) -> list[tuple[str, str]]:
        """(label, value) of a front axis: each persona's fit, then each independent meter."""
        labels = LABELS[:max(2, min(MAX_PERSONAS, int(n_personas or 2)))]
        return [(f"fit under {label}", label) for label in labels] + \
            [(f"{meter.short} ({name})", name) for name, meter in METERS.items()]

    @classmethod
    def axes_choices(cls, n_personas):
        """-> x axis, y axis: the choices for n personas and the meters (A and B stay selected)."""
        choices = cls.axis_choices(n_personas)
        return gr.update(choices=choices), gr.update(choices=choices)

    @staticmethod
    def front_axes(result, x, y):
        """-> front plot with new axes (no model needed)."""
        try:
            return charts.front_figure(result, x, y)
        except PJudgeError:
            return gr.skip()
