"""Logit fusion and contrast: the personas mixed inside every token.

    ℓ = ℓ₀ + (1 + α) (Σᵢ wᵢ ℓᵢ − ℓ₀)

ℓᵢ are the model's logits under persona i, ℓ₀ under no preference, the weights wᵢ >= 0 sum to 1.
α = 0 is product-of-experts fusion (ℓ = Σ wᵢ ℓᵢ: the MOD idea on one model, and ℓ₀ is never
computed); α > 0 amplifies what the preferences change relative to no preference (contrastive /
context-aware decoding). The fused logits then go through the same `Warping` as every method
(repetition processors on the output, temperature / top-k / top-p) and are sampled (argmax when
greedy). Each Step records the fused probability p of the token and each persona's own
probability of it under the same processing (`persona_p`).

One forward per token, the prompts (personas, and no preference when α > 0) as rows of the same
forward (the engine puts feeds of the same width together; docs/benchmarks.md: two rows cost
less than two forwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import InputError
from ..kv import Row
from ..personas import labelled
from ..prompting import persona_prompts, prompt_ids, prompt_text
from ..runner import full_logits
from ..sampler import FusedDraw
from ..sampling import JudgedToken, Uniforms, Warping, choose, fuse_logits
from ..settings import DecodeSettings
from ..trace import Trace
from .registry import Method, Panel

# Fusion's rows share each forward: a token costs about one forward, a little more for the extra rows.
FORWARDS_PER_TOKEN = 1.2


def fusion_steps(rows: list[Row], labels: list[str], weights: Sequence[float], alpha: float, trace: Trace,
                 settings: DecodeSettings, uniforms: Uniforms):
    """`rows` are the personas' prompts in `labels` order, then ℓ₀'s when α > 0; yields a `FusedDraw` over
    every row's feed before each token (and is sent the token), then the token's `Step`."""
    w = torch.tensor(list(weights), dtype=torch.float32)
    warping = Warping(settings)
    output: list[int] = []
    while not trace.finished(output, settings.max_new_tokens):
        drawn = yield FusedDraw([row.feed(output) for row in rows], warping, list(output),
                                uniforms.at(len(output))[Uniforms.DRAFT], w, alpha, len(labels))
        output.append(drawn.token)
        yield trace.step(JudgedToken(drawn.token, "fused"), drawn.p, None, persona_p=dict(zip(labels, drawn.witnesses)))


def read_options(n: int, options: dict) -> dict:
    """{"weights": normalised to sum 1, "alpha": α}, validated."""
    weights, alpha = options.get("weights"), options.get("alpha", 0.0)
    if weights is None:
        weights = [1.0] * n
    try:
        weights = [float(w) for w in weights]
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise InputError("Fusion weights and α must be numbers.") from None
    if len(weights) != n:
        raise InputError(f"Fusion needs one weight per persona: {n} personas, {len(weights)} weights.")
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise InputError("Fusion weights must be at least 0 and not all 0.")
    if not alpha >= 0 or alpha != alpha or alpha == float("inf"):
        raise InputError(f"Fusion α must be a finite number of at least 0; got {alpha}.")
    total = sum(weights)
    return {"weights": [w / total for w in weights], "alpha": alpha}


def parse_option(key: str, raw: str):
    """A run spec's text of an option: weights as "2:1", α as a number (`specs` names the spec in the error)."""
    try:
        return tuple(float(w) for w in raw.split(":")) if key == "weights" else float(raw)
    except ValueError:
        if key == "weights":
            raise InputError("weights are numbers separated by ':', e.g. weights=2:1.") from None
        raise InputError(f"{key} must be a number, got {raw!r}.") from None


def drop_defaults(options: dict) -> dict:
    """fusion(alpha=0,weights=1:1) is plain fusion: α 0 and equal weights are the defaults."""
    return {k: v for k, v in options.items()
            if not (k == "alpha" and v == 0) and not (k == "weights" and len(set(v)) == 1)}


def start(lm, query, prefs, settings, options, uniforms, trace):
    prompts, trace.record["prompts"] = persona_prompts(lm.tokenizer, query, prefs)
    weights, alpha = options["weights"], options["alpha"]
    rows = list(prompts.values())
    if alpha > 0:  # the last row is ℓ₀ (no preference); it only matters when α > 0
        rows.append(prompt_ids(lm.tokenizer, query, []))
        trace.record["prompts"]["none"] = prompt_text(lm.tokenizer, query, [])
    trace.record["options"] = {"weights": dict(zip(prefs, weights)), "alpha": alpha}
    labels = list(prefs)
    return rows, lambda rows: fusion_steps(rows, labels, weights, alpha, trace, settings, uniforms)


def _check(prefs: dict, settings: DecodeSettings) -> None:
    if len(prefs) < 1:
        raise InputError("Fusion needs at least one preference.")


def title(personas, options):
    options.setdefault("alpha", 0.0)
    return "Fusion", options, personas is not None


def lab_spec(options) -> str:
    """The fusion panel's run spec, from the lab's α and weights."""
    parts = [f"alpha={options.alpha:g}"]
    if options.weights:
        parts.append(f"weights={':'.join(f'{w:g}' for w in options.weights)}")
    return f"fusion({','.join(parts)})"


def reference(lm, query: str, preferences, settings: DecodeSettings, **options) -> list[tuple[int, str, None]]:
    """The slow, literal decoder: every prompt's logits recomputed from scratch at each position."""
    prefs = labelled(preferences)
    options = read_options(len(prefs), options)
    weights, alpha = options["weights"], options["alpha"]
    prompts = [prompt_ids(lm.tokenizer, query, [text]) for text in prefs.values()]
    base = prompt_ids(lm.tokenizer, query, [])
    warping, uniforms = Warping(settings), Uniforms(settings.seed)
    out: list[int] = []
    while len(out) < settings.max_new_tokens and not (out and out[-1] in lm.eos_token_ids):
        persona_logits = torch.cat([full_logits(lm.model, p, out, 1) for p in prompts]).float()
        base_logits = full_logits(lm.model, base, out, 1)[0].float() if alpha > 0 else None
        fused = fuse_logits(persona_logits, torch.tensor(weights), alpha, base_logits)
        p = warping.probs(fused[None], [out])[0]
        out.append(choose(p, uniforms.at(len(out))[Uniforms.DRAFT], settings.greedy))
    return [(token, "fused", None) for token in out]


METHOD = Method(
    name="fusion",
    description="Logit fusion: every token from ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀); α = 0 is product-of-experts, α > 0 "
                "contrasts the personas with no preference.",
    start=start,
    check=_check,
    options=("weights", "alpha"),
    option_labels={"alpha": "α", "weights": "w"},
    read_options=read_options,
    parse_option=parse_option,
    drop_defaults=drop_defaults,
    title=title,
    forwards_per_token=lambda settings: FORWARDS_PER_TOKEN,
    panels=(Panel("fusion", "Fusion (mixed logits)", "every token sampled from the personas' combined logits",
                  position=7, spec=lab_spec),),
    reference=reference,
    examples=("fusion", "fusion(alpha=0.5)"),
)
