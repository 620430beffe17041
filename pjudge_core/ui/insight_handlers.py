"""What the insight section's events do: sample a front of persona fits per method, and infer a
persona from a user's example pairs (testable without a browser, like `handlers.Studio`).

Each method's outputs are listed in its docstring in the order `app.py` passes the components.
Every failure a visitor can cause is a message in the page; model output is escaped by `render`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import gradio as gr

from ..errors import InputError, PJudgeError
from ..evaluation.compare import stream_compare
from ..evaluation.fit import NOTE
from ..evaluation.inference import infer_persona, preset_names
from ..evaluation.meters import METERS
from . import charts, insight, records, render
from .access import Access
from .form import number, read_form
from .models import ModelHolder, decoding_engine, quantize_option
from .zerogpu import GpuTime

DEFAULT_SAMPLES = 4
DEFAULT_FRONT_TOKENS = 64  # short answers: a front of 4 samples x 2 methods takes about half a minute on a CPU
MAX_SAMPLES = 16
UPDATE_EVERY_S = 0.25  # the progress bar moves at most ~4 times per second



class InsightHandlers:
    """The front and persona-inference events around the app's shared `ModelHolder`."""

    def __init__(self, models: ModelHolder, access: Access | None = None, gpu: GpuTime | None = None):
        self.models = models
        self.access = access or Access()
        self.gpu = gpu or GpuTime(self.access)  # on ZeroGPU: the seconds each call asks for, and its limit

    # ------------------------------------------------------------------ front
    def front(self, model_name, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
              top_k, top_p, seed, methods, n_personas, persona_c, pref_c, persona_d, pref_d, alpha, weights,
              repetition_penalty, no_repeat_ngram_size, samples, tokens, x, y, record,
              progress=gr.Progress()) -> Iterator[tuple]:
        """Sample K answers per ticked method and score each under every persona. Yields: front
        plot, front summary HTML, front result (gr.State), download button, run record (gr.State)."""
        skip = gr.skip()
        with contextlib.ExitStack() as held:  # the model stays loaded until the front ends (Stop included)
            try:
                k = number(samples, "Samples per method", DEFAULT_SAMPLES, whole=True)
                if not 1 <= k <= MAX_SAMPLES:
                    raise InputError(f"Samples per method must be between 1 and {MAX_SAMPLES}; got {k}.")
                form = read_form(self.access, persona_a=persona_a, pref_a=pref_a, persona_b=persona_b, pref_b=pref_b,
                                 query=query, lam=lam, roles=roles, greedy=greedy, temperature=temperature, top_k=top_k,
                                 top_p=top_p, max_new_tokens=number(tokens, "Tokens per answer", DEFAULT_FRONT_TOKENS,
                                                                    whole=True),
                                 seed=seed, methods=methods, n_personas=n_personas, persona_c=persona_c, pref_c=pref_c,
                                 persona_d=persona_d, pref_d=pref_d, alpha=alpha, weights=weights,
                                 repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
                charts.check_axes(form.preferences, x, y)  # before the model loads
                self.access.check_model(model_name, bool(four_bit))
                progress(0.0, desc="Loading the model …")
                lm = held.enter_context(self.models.use(model_name, quantize_option(four_bit)))
                engine = decoding_engine(self.models, lm, self.access.engine_rows, self.gpu.zero_gpu)
                updates = stream_compare(lm, query, form.preferences, list(form.specs.values()), k, form.settings,
                                         every_token=True, engine=engine)
            except PJudgeError as exc:
                yield None, render.message_html(str(exc), "error"), skip, skip, skip
                return
            total = k * len(form.specs)
            yield None, render.message_html(f"Sampling {total} answers of {form.settings.max_new_tokens} tokens …",
                                            "info"), skip, skip, skip
            started, shown, result = time.perf_counter(), 0.0, None
            limit = self.gpu.limit(self.gpu.front(model_name, four_bit, form, k))
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
        labels = list("ABCD"[:max(2, min(4, int(n_personas or 2)))])
        return [(f"fit under {label}", label) for label in labels] + \
            [(f"{meter.short} ({name})", name) for name, meter in METERS.items()]

    @staticmethod
    def axes_choices(n_personas):
        """-> x axis, y axis: the choices for n personas and the meters (A and B stay selected)."""
        choices = InsightHandlers.axis_choices(n_personas)
        return gr.update(choices=choices), gr.update(choices=choices)

    @staticmethod
    def front_axes(result, x, y):
        """-> front plot with new axes (no model needed)."""
        try:
            return charts.front_figure(result, x, y)
        except PJudgeError:
            return gr.skip()

    # ------------------------------------------------------------------ persona inference
    @staticmethod
    def pick_user(index):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        try:
            user = insight.sample_user(index)
        except PJudgeError as exc:
            return gr.skip(), render.message_html(str(exc), "error"), None, ""
        return insight.pairs_rows(user["pairs"]), render.profile_html(user), user["truth"], ""

    @staticmethod
    def paste_json(text):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        return InsightHandlers._loaded(lambda: insight.pairs_from_json(text), "the pasted JSON")

    @staticmethod
    def upload(path):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        return InsightHandlers._loaded(lambda: insight.pairs_from_file(path), "the uploaded file")

    @staticmethod
    def _loaded(read, source: str):
        try:
            pairs, truth = read()
        except PJudgeError as exc:
            return gr.skip(), gr.skip(), gr.skip(), render.message_html(str(exc), "error")
        known = " (with its ground-truth persona)" if truth else ""
        return (insight.pairs_rows(pairs), render.message_html(f"{len(pairs)} pairs from {source}{known}.", "ok"),
                truth, "")

    def infer(self, model_name, four_bit, rows, kind, truth, record, write=False, progress=gr.Progress()):
        """-> inference result HTML, inference (gr.State), use-as-A button, use-as-B button,
        download button, run record (gr.State)."""
        skip = gr.skip()
        try:
            pairs = insight.pairs_from_rows(rows)
            candidates = insight.candidates(kind)
            self.access.check_model(model_name, bool(four_bit))
            self.access.check_capacity(len(pairs))
            progress(0.0, desc="Loading the model …")
            with self.models.use(model_name, quantize_option(four_bit)) as lm:
                if write:
                    progress(0.0, desc="The model writes a candidate …")
                inference = infer_persona(lm, pairs, candidates, write=bool(write),
                                          progress=lambda done, total: progress((done, total), desc="Scoring pairs"))
        except PJudgeError as exc:
            return render.message_html(str(exc), "error"), skip, skip, skip, skip, skip
        result = {**inference.to_dict(), "truth": truth, "candidates": kind, "example_pairs": pairs}
        record = records.with_section(record, "inference", result, model=lm.describe())
        enabled = gr.update(interactive=True)
        return (render.inference_html(result, truth), result, enabled, enabled,
                gr.update(value=records.write_record(record), visible=True), record)

    @staticmethod
    def use_best(inference):
        """-> persona preset, preference text: the best candidate of the last inference."""
        if not inference:
            return gr.skip(), gr.skip()
        text = inference["best"]
        return preset_names().get(text), text
