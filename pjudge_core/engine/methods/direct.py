"""Direct prompting: plain sampling from the model under one prompt.

The paper's baseline combines every preference into that one prompt (`prompting.combine_preferences`);
with one preference it is "that persona alone", with none "no preference". Same `Warping`, same
`Uniforms` positions as the other methods, one cached forward (shared with other rows) per token.
"""

from __future__ import annotations

from ..kv import Row
from ..personas import LABELS, labelled
from ..prompting import combine_preferences, prompt_ids, prompt_text
from ..runner import full_logits
from ..sampler import Draw
from ..sampling import JudgedToken, Uniforms, Warping, choose
from ..settings import DecodeSettings
from ..trace import Trace
from .registry import Method, Panel


def direct_steps(row: Row, trace: Trace, settings: DecodeSettings, uniforms: Uniforms):
    """Yields a `Draw` from the row before each token (and is sent the token), then the token's `Step`."""
    warping = Warping(settings)
    output: list[int] = []
    while not trace.finished(output, settings.max_new_tokens):
        drawn = yield Draw(row.feed(output), warping, list(output), uniforms.at(len(output))[Uniforms.DRAFT])
        token, p = drawn.token, drawn.p
        output.append(token)
        yield trace.step(JudgedToken(token, "sampled"), p, p)


def start(lm, query, prefs, settings, options, uniforms, trace):
    texts = list(prefs.values())
    trace.record.update(instruction=combine_preferences(texts), prompt=prompt_text(lm.tokenizer, query, texts))
    return [prompt_ids(lm.tokenizer, query, texts)], lambda rows: direct_steps(rows[0], trace, settings, uniforms)


def title(personas, options):
    """"No preference", "A alone" or "Direct prompting" (with its personas when a spec picks some)."""
    if personas is not None and len(personas) == 0:
        return "No preference", options, False
    if personas is not None and len(personas) == 1:
        return f"{personas[0]} alone", options, False
    return "Direct prompting", options, personas is not None


def reference(lm, query: str, preferences, settings: DecodeSettings, **options) -> list[tuple[int, str, None]]:
    """The slow, literal decoder: each token's distribution from a full forward over prompt + output."""
    prefs = labelled(preferences)
    prompt = prompt_ids(lm.tokenizer, query, list(prefs.values()))
    warping, uniforms = Warping(settings), Uniforms(settings.seed)
    out: list[int] = []
    while len(out) < settings.max_new_tokens and not (out and out[-1] in lm.eos_token_ids):
        p = warping.probs(full_logits(lm.model, prompt, out, 1), [out])[0]
        out.append(choose(p, uniforms.at(len(out))[Uniforms.DRAFT], settings.greedy))
    return [(token, "sampled", None) for token in out]


def _alone(label: str, position: int) -> Panel:
    return Panel(f"direct[{label}]", f"{label} alone", "that persona's preference alone, plain sampling",
                 position=position, personas=tuple(n for n in (2, 3, 4) if LABELS.index(label) < n))


METHOD = Method(
    name="direct",
    description="Direct prompting: the preferences combined into one prompt (one preference: that persona alone; "
                "none: no preference).",
    start=start,
    title=title,
    panels=(Panel("direct", "Direct prompting (one prompt)", "every preference written into one prompt",
                  position=1, default=True),
            *(_alone(label, 3 + i) for i, label in enumerate(LABELS))),
    reference=reference,
    examples=("direct", "direct[A]", "direct[]"),
)
