"""The page's static text: the one-line header, and the About tab (what the method does, what each
colour on the page means, how to cite the paper).

Nothing here holds user input, so nothing is escaped. The colour legend is built from the same
CSS classes the panels use (`render.legend_html`, `assets/style.css`) and the same colours the
charts use (`charts.COLORS`, `charts.DRAFTER_COLORS`, plotly's RdBu), so it cannot drift from them.
"""

from __future__ import annotations

import gradio as gr
from plotly.colors import diverging

from .. import charts, render

HEADER = """
# Persona-judge Studio
Several personas steer one answer, with no training: one drafts λ tokens, the next judges them. Press **Run**;
**About** explains the colours.
"""

METHOD = """
### What the method does
[Persona-judge](https://arxiv.org/abs/2504.12663) aligns one answer with several preferences
(*personas*) at decoding time, with no training and no reward model. The same model is prompted once
per persona. In each block of λ tokens one persona **drafts** tokens; the next persona **judges** them
in one forward pass: a drafted token is kept when the judge finds it likely enough (u ≤ p/q, where q
is the drafter's probability of the token and p the judge's), otherwise the judge picks its own token
and the block ends. When the judge keeps all λ tokens it adds one **bonus** token. Roles rotate every
block, so the answer has to satisfy every persona.

### The tabs
- **Compare**: pick a model, personas and a query, tick the methods, press Run. Every ticked method
  decodes at the same time with the same seed: Persona-judge, direct prompting (every preference in
  one prompt), each persona alone, logit fusion, and what the paper's official code does. Under the
  panels: Persona-judge block by block, log(p/q) per token and the acceptance rate.
- **Did it work?**: each finished answer scored under every persona (persona fit, by the same
  model), independent meters that no language model computes (reading grade, words, sentiment), and
  K sampled answers per method to see which one served every persona best.
- **Infer a persona**: which candidate persona best explains a user's example choices.
- **Judge capacity**: can this model tell two personas apart at all? A model that cannot is a weak
  judge.
"""

CITATION = """
### How to cite
Xiaotian Zhang, Ruizhe Chen, Yang Feng and Zuozhu Liu. 2025. *Persona-judge: Personalized Alignment of
Large Language Models via Token-level Self-judgment.* Findings of the Association for Computational
Linguistics: ACL 2025, pages 5037–5049. [arXiv:2504.12663](https://arxiv.org/abs/2504.12663)

```bibtex
@inproceedings{zhang-etal-2025-persona,
  title     = {Persona-judge: Personalized Alignment of Large Language Models via Token-level Self-judgment},
  author    = {Zhang, Xiaotian and Chen, Ruizhe and Feng, Yang and Liu, Zuozhu},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  pages     = {5037--5049},
  year      = {2025},
  doi       = {10.18653/v1/2025.findings-acl.260},
  eprint    = {2504.12663},
  archivePrefix = {arXiv}
}
```
"""

# The persona colours in words; the hex values are the charts' and the CSS variables' (a test checks).
PERSONA_COLOURS = {"A": "orange", "B": "purple", "C": "teal", "D": "pink"}
# Plotly's RdBu, as the persona-fit heatmap uses it: red below 0, blue above.
FIT_DOWN, FIT_UP = diverging.RdBu[1], diverging.RdBu[-2]


def _swatch(colour: str, text: str) -> str:
    return f'<span class="pj-swatch" style="background:{colour}"></span>{text}'


def colours_html() -> str:
    """What every colour on the page means: tokens (the panels' own legend), personas, charts, messages."""
    names = ", ".join(f'<span class="pane-title pane-title-{label.lower()}">Persona {label}</span> {colour}'
                      for label, colour in PERSONA_COLOURS.items())
    personas = (f"<li>{names}: the underline of the tokens each one drafted, its bars in the acceptance chart, "
                "the ring of its fit chip, the underline of its labels</li>")
    decisions = charts.COLORS
    charts_items = (
        f'<li>{_swatch(decisions["accepted"], "")}{_swatch(decisions["resampled"], "")}'
        f'{_swatch(decisions["bonus"], "")} Persona-judge, block by block: accepted, resampled, bonus '
        '(the token colours above)</li>'
        f'<li>{_swatch(FIT_UP, "")} blue / {_swatch(FIT_DOWN, "")} red in the persona-fit heatmap: that persona '
        'made the model more / less willing to write the token</li>')
    messages = "".join(f'<div class="pj-msg pj-msg-{kind}">{text}</div>' for text, kind in (
        ("Blue: working, or a hint.", "info"), ("Green: done.", "ok"),
        ("Red: something to fix, in one sentence.", "error")))
    return (f'<div class="pj-about-colours"><h3>What the colours mean</h3><p><b>Tokens</b> in the panels</p>'
            f'{render.legend_html()}<p><b>Personas</b></p><ul class="pj-about-list">{personas}</ul>'
            f'<p><b>Charts</b></p><ul class="pj-about-list">{charts_items}</ul><p><b>Messages</b></p>{messages}</div>')


def build() -> None:
    """The About tab: the method, the colours, the citation (static: no events)."""
    with gr.Tab("About", id="about", elem_id="tab-about"):
        gr.Markdown(METHOD, elem_id="about-method")
        gr.HTML(colours_html(), elem_id="about-colours")
        gr.Markdown(CITATION, elem_id="about-cite")
