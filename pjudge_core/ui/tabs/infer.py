"""The "Infer a persona" tab: which candidate persona explains a user's example choices?

Each candidate persona scores Σ [log p(chosen | prompt, persona) − log p(rejected | prompt,
persona)] under the model picked on Compare (`evaluation.inference`); the best one can become
persona A or B there. The pairs come from a bundled P-Soups user, pasted or uploaded JSON, or the
table itself (`insight`: checked, with one readable sentence for anything malformed).
"""

from __future__ import annotations

import gradio as gr

from ...errors import PJudgeError
from ...evaluation.self_judge.inference import infer_persona, preset_names
from .. import insight, records, render
from ..fields import raw
from ..models import quantize_option
from ..page import Tab


class InferTab(Tab):
    """The tab's layout, events and handlers (see the module docstring)."""

    # ------------------------------------------------------------------ layout
    def build(self) -> None:
        with gr.Tab("Infer a persona", id="infer", elem_id="tab-infer"):
            gr.Markdown("### Which persona explains a user's choices?\nEach candidate persona scores "
                        "Σ [log p(chosen | prompt, persona) − log p(rejected | prompt, persona)] under the model "
                        "picked on Compare; the best one can become persona A or B there.")
            with gr.Row(equal_height=False):
                self.user = raw(gr.Dropdown(insight.user_choices(), value=None, label="A P-Soups user (bundled)",
                                            elem_id="infer-user", scale=3))
                with gr.Column(scale=2, min_width=260):
                    self.kind = gr.Radio([(label, kind) for kind, label in insight.CANDIDATE_KINDS.items()],
                                         value="psoups", label="Candidates", elem_id="infer-candidates")
                    self.write = gr.Checkbox(False, label="…and one the model writes from the pairs",
                                             info="Useful with larger models; a 135M model tends to paraphrase "
                                                  "the examples", elem_id="infer-write")
            self.profile = gr.HTML("", elem_id="infer-profile")
            self.pairs = gr.Dataframe(headers=["prompt", "chosen", "rejected"], column_count=(3, "fixed"),
                                      row_count=(3, "dynamic"), type="array", interactive=True, wrap=True,
                                      column_widths=["34%", "33%", "33%"],
                                      label="Example pairs (edit, add rows, or paste)", elem_id="infer-pairs")
            with gr.Accordion("Paste or upload JSON", open=False):
                self.json = gr.Textbox("", lines=4, label="JSON: a list of {prompt, chosen, rejected}, or one "
                                       "user record", elem_id="infer-json")
                with gr.Row():
                    self.json_btn = gr.Button("Put this JSON in the table", size="sm", elem_id="infer-json-btn")
                    self.file = gr.UploadButton("Upload a .json file", file_types=[".json"], size="sm",
                                                elem_id="infer-file")
            self.infer_btn = gr.Button("Infer the persona", variant="primary", elem_id="infer-btn")
            self.out = gr.HTML("", elem_id="infer-result")
            with gr.Row():
                self.use_a = gr.Button("Use the best as persona A (on Compare)", size="sm", interactive=False,
                                       elem_id="infer-use-a")
                self.use_b = gr.Button("Use the best as persona B (on Compare)", size="sm", interactive=False,
                                       elem_id="infer-use-b")

    # ------------------------------------------------------------------ events
    def wire(self) -> None:
        page, compare = self.page, self.page.compare
        loaded = [self.pairs, self.profile, page.truth, self.out]
        self.user.input(self.pick_user, self.user, loaded, api_visibility="private")
        self.json_btn.click(self.paste_json, self.json, loaded, api_visibility="private")
        self.file.upload(self.upload, self.file, loaded, api_visibility="private")
        self.infer_btn.click(page.on_gpu(self.infer, self.gpu.infer_duration),
                             [compare.model, compare.four_bit, self.pairs, self.kind, page.truth, page.record,
                              self.write],
                             [self.out, page.inference, self.use_a, self.use_b, compare.download, page.record],
                             **page.model_event, api_name="infer")
        for button, persona, text in ((self.use_a, "persona_a", "pref_a"), (self.use_b, "persona_b", "pref_b")):
            button.click(self.use_best, page.inference, [compare.form[persona], compare.form[text]],
                         api_visibility="private")

    # ------------------------------------------------------------------ handlers
    @staticmethod
    def pick_user(index):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        try:
            user = insight.sample_user(index)
        except PJudgeError as exc:
            return gr.skip(), render.message_html(str(exc), "error"), None, ""
        return insight.pairs_rows(user["pairs"]), render.profile_html(user), user["truth"], ""

    @classmethod
    def paste_json(cls, text):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        return cls._loaded(lambda: insight.pairs_from_json(text), "the pasted JSON")

    @classmethod
    def upload(cls, path):
        """-> pairs table, profile HTML, ground truth (gr.State), inference result HTML."""
        return cls._loaded(lambda: insight.pairs_from_file(path), "the uploaded file")

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
