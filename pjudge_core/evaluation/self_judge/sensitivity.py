"""Does this model follow a persona at all? Measured against a placebo, before any method is judged.

Persona-judge can only steer where the model's distribution moves with the persona's text. The
model-intrinsic measure needs no meter: along answers written with **no preference**, the mean
per-token KL(persona ‖ no preference) of the raw (unwarped) next-token distributions, by teacher
forcing (`scoring.prefix_tree.prefix_tree_distributions`: the prompts share their template's
tokens, fed once). Any change of the prompt moves KL above 0, so every persona is compared with a
**placebo**: a preference of similar length and style that asks for nothing (`PLACEBO`). Per
answer, the persona's KL minus the placebo's is a paired difference; a persona whose difference's
95% t-interval over the answers is not above 0 is reported as **not followed by this model**.

`sensitivity(lm, queries, personas)` writes the answers (direct prompting with no preference,
`DecodeSettings` as given, one per query and seed), scores them, and returns per persona the mean
KL, the placebo-subtracted difference and the verdict. With ``meters=True`` it also writes each
persona's own answers (that persona alone) and the placebo's on the same queries and seeds, and
gives each meter's paired mean shift against no preference and against the placebo, with
intervals (`meters`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ...engine.prompting import prompt_ids
from ...engine.requests import Request, generate_many
from ...engine.settings import DecodeSettings
from ..meters import METERS, measure
from ..scoring.prefix_tree import prefix_tree_distributions
from ..stats import mean_interval, paired_difference

# A preference of the presets' length and style that asks for nothing: what any prompt change alone does.
PLACEBO = "Generate a response to the user's message below, written the way you normally would."
PLACEBO_NAME = "placebo"
NONE = "direct[]"  # the answers are written with no preference


def kl_per_token(persona: torch.Tensor, none: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) at each position from log-probs [tokens, vocabulary] (nats)."""
    return (persona.exp() * (persona - none)).sum(-1)


def answer_kls(lm, query, answer: Sequence[int], texts: Mapping[str, str]) -> dict[str, float]:
    """The mean per-token KL(text's prompt ‖ no preference's) along one answer, for each text."""
    tok = lm.tokenizer
    items = [(prompt_ids(tok, query, []), list(answer))] + [(prompt_ids(tok, query, [t]), list(answer))
                                                           for t in texts.values()]
    none, *others = prefix_tree_distributions(lm, items)
    return {name: float(kl_per_token(d, none).mean()) for name, d in zip(texts, others)}


def _answers(lm, queries: Sequence, prefs: Sequence[str], settings: DecodeSettings, seeds: Sequence[int],
             rows: int) -> list[tuple[int, int, object]]:
    """(query index, seed, Result) of direct prompting with `prefs` for every query and seed."""
    keys = [(q, seed) for q in range(len(queries)) for seed in seeds]
    requests = [Request("direct", queries[q], list(prefs), settings.replace(seed=seed)) for q, seed in keys]
    return [(q, seed, r) for (q, seed), r in zip(keys, generate_many(lm, requests, rows=rows))]


def sensitivity(lm, queries: Sequence, personas: Mapping[str, str], *, placebo: str = PLACEBO,
                settings: DecodeSettings | None = None, seeds: Sequence[int] = (0,), meters: bool = False,
                rows: int = 16, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """How strongly `lm` follows each persona ({name: text}) on `queries`, against `placebo` (see the
    module docstring). Returns ``{kind, model, placebo, settings, seeds, n (answers), cut (answers the
    token budget cut), personas {name: {text, kl, placebo_kl, vs_placebo, ratio, followed, meters?}},
    placebo_kl}``; with `meters`, each persona's ``meters {meter: {vs_none, vs_placebo}}``."""
    settings = settings or DecodeSettings()
    report = progress or (lambda stage, done, total: None)
    texts = {**dict(personas), PLACEBO_NAME: placebo}
    answers = _answers(lm, queries, [], settings, seeds, rows)
    kls: dict[str, dict] = {name: {} for name in texts}
    for i, (q, seed, result) in enumerate(answers):
        report("scoring", i, len(answers))
        if result.token_ids:
            for name, value in answer_kls(lm, queries[q], result.token_ids, texts).items():
                kls[name][(q, seed)] = value
    report("scoring", len(answers), len(answers))
    out = {"kind": "sensitivity", "model": lm.name, "placebo": placebo, "settings": settings.to_dict(),
           "seeds": list(seeds), "n": sum(bool(r.token_ids) for _, _, r in answers),
           "cut": sum(r.stats["stopped_by"] == "max_new_tokens" for _, _, r in answers),
           "placebo_kl": mean_interval(list(kls[PLACEBO_NAME].values())), "personas": {}}
    for name, text in personas.items():
        diff = paired_difference(kls[name], kls[PLACEBO_NAME])
        kl = mean_interval(list(kls[name].values()))
        placebo_mean = out["placebo_kl"]["mean"]
        out["personas"][name] = {"text": text, "kl": kl, "vs_placebo": diff,
                                 "ratio": kl["mean"] / placebo_mean if placebo_mean and placebo_mean > 1e-6 else None,
                                 "followed": bool(diff["low"] is not None and diff["low"] > 0)}
    if meters:
        _meter_shifts(lm, queries, texts, settings, seeds, rows, answers, out, report)
    return out


def _meter_shifts(lm, queries, texts, settings, seeds, rows, none_answers, out, report) -> None:
    """Each persona's paired meter shift against no preference and against the placebo."""
    def values(answers):
        return {(q, seed): measure(r.text) for q, seed, r in answers}

    none = values(none_answers)
    own = {}
    for i, (name, text) in enumerate(texts.items()):
        report("writing", i, len(texts))
        own[name] = values(_answers(lm, queries, [text], settings, seeds, rows))
    report("writing", len(texts), len(texts))
    for name in out["personas"]:
        out["personas"][name]["meters"] = {
            meter: {"vs_none": paired_difference(_column(own[name], meter), _column(none, meter)),
                    "vs_placebo": paired_difference(_column(own[name], meter), _column(own[PLACEBO_NAME], meter))}
            for meter in METERS}


def _column(rows: Mapping, meter: str) -> dict:
    return {k: v[meter] for k, v in rows.items() if v[meter] is not None}


def verdict(name: str, entry: Mapping, model: str, placebo_kl: float | None) -> str:
    """One sentence a visitor reads: does `model` follow this persona, against the placebo?"""
    diff, kl = entry["vs_placebo"], max(0.0, entry["kl"]["mean"] or 0.0)  # KL ≥ 0: a -0.000 is rounding
    if diff["mean"] is None:
        return f"{model}: no answers to measure '{name}' on."
    against = f"the placebo's {placebo_kl:.3f} (a preference that asks for nothing)"
    if entry["followed"]:
        return f"{model} follows '{name}': its next-token distributions move {kl:.3f} nats per token, against {against}."
    return (f"{model} barely follows '{name}': its next-token distributions move {kl:.3f} nats per token, not "
            f"clearly more than {against}; no decoding method can show much of it with this model.")
