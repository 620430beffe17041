"""Direct prompting: plain sampling from the model under one prompt.

The paper's baseline combines every preference into that one prompt (`prompting.combine_preferences`);
with one preference it is "that persona alone", with none "no preference". Same `Warping`, same
`Uniforms` positions as the other methods, one cached forward per token.
"""

from __future__ import annotations

from collections.abc import Iterator

from .caches import RoleCache
from .sampling import JudgedToken, Uniforms, Warping, choose
from .settings import DecodeSettings
from .trace import Recorder, Step


def direct_steps(lm, prompt: list[int], recorder: Recorder, settings: DecodeSettings,
                 uniforms: Uniforms) -> Iterator[Step]:
    role = RoleCache(lm.model, prompt)
    warping = Warping(settings)
    output: list[int] = []
    while not recorder.finished(output, settings.max_new_tokens):
        p = warping.probs(role.logits(output), [output])[0]
        token = choose(p, uniforms.at(len(output))[Uniforms.DRAFT], settings.greedy)
        output.append(token)
        yield recorder.step(p, p, JudgedToken(token, "sampled"))
    return recorder.result(role.forward_passes, [prompt])
