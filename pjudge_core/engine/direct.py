"""Direct prompting: plain sampling from the model under one prompt.

The paper's baseline combines every preference into that one prompt (`prompting.combine_preferences`);
with one preference it is "that persona alone", with none "no preference". Same `Warping`, same
`Uniforms` positions as the other methods, one cached forward (shared with other rows) per token.
"""

from __future__ import annotations

from .kv import Row
from .sampling import JudgedToken, Uniforms, Warping, choose
from .settings import DecodeSettings
from .trace import Recorder


def direct_steps(row: Row, recorder: Recorder, settings: DecodeSettings, uniforms: Uniforms):
    """Yields the row's `Feed` before each token (and is sent its logits), then the token's `Step`."""
    warping = Warping(settings)
    output: list[int] = []
    while not recorder.finished(output, settings.max_new_tokens):
        p = warping.probs((yield row.feed(output)), [output])[0]
        token = choose(p, uniforms.at(len(output))[Uniforms.DRAFT], settings.greedy)
        output.append(token)
        yield recorder.step(p, p, JudgedToken(token, "sampled"))
    return recorder.result([row.prompt])
