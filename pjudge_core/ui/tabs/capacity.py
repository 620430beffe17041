"""The "Judge capacity" tab: can this model tell two personas apart at all?

Scores a sample of the P-Soups student/PhD preference pairs with the model picked on Compare
(AlignX's alignment accuracy, `evaluation.alignment.judge_capacity`): how often the
persona-prompted model prefers the answer written for that persona. Near 50% it is a weak judge,
and Persona-judge has little to work with.
"""

from __future__ import annotations

import gradio as gr

from ...errors import PJudgeError
from ...evaluation.self_judge.alignment import judge_capacity
from .. import render
from ..fields import raw
from ..form import number
from ..models import quantize_option
from ..page import Tab

DEFAULT_PAIRS = 40


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


class CapacityTab(Tab):
    """The tab's layout, event and handler (see the module docstring)."""

    def build(self) -> None:
        with gr.Tab("Judge capacity", id="capacity", elem_id="tab-capacity"):
            gr.Markdown("### Can this model tell two personas apart?\nScores a sample of the P-Soups "
                        "student/PhD preference pairs with the model picked on Compare: how often the "
                        "persona-prompted model prefers the answer written for that persona. Near 50% it is a "
                        "weak judge, and Persona-judge has little to work with.")
            with gr.Row(equal_height=False):
                self.n = raw(gr.Slider(10, 200, value=DEFAULT_PAIRS, step=10, label="pairs to score",
                                       elem_id="capacity-n"))
                self.button = gr.Button("Measure judge capacity", variant="primary", elem_id="capacity-btn")
            self.out = gr.HTML("", elem_id="capacity-result")

    def wire(self) -> None:
        page, compare = self.page, self.page.compare
        self.button.click(page.on_gpu(self.capacity, self.gpu.capacity_duration),
                          [compare.model, compare.four_bit, self.n], self.out, **page.model_event,
                          api_name="capacity")

    def capacity(self, model_name, four_bit, n, progress=gr.Progress()):
        """-> capacity result HTML: can this model tell two personas apart?"""
        try:
            pairs = number(n, "The number of pairs", DEFAULT_PAIRS, whole=True)
            self.access.check_model(model_name, bool(four_bit))
            self.access.check_capacity(pairs)
            progress(0.0, desc="Loading the model …")
            with self.models.use(model_name, quantize_option(four_bit)) as lm:
                result = judge_capacity(lm, n=pairs, seed=0,
                                        progress=lambda done, total: progress((done, total), desc="Scoring pairs"))
        except PJudgeError as exc:
            return render.message_html(str(exc), "error")
        return render.message_html(capacity_text(lm.name, result), "ok")
