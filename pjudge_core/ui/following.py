"""Does the current model follow the current personas? What "Did it work?" says first.

Before the methods are compared, a visitor should learn whether the model moves with each persona
at all (`evaluation.self_judge.sensitivity`: KL(persona ‖ no preference) along no-preference
answers, against a placebo that asks for nothing). Two sources:
  * `known` — the table measured for a model and shipped with the project (`SHIPPED`: the bundled
    model's persona presets, `eval sensitivity --all-presets`, 20 koala prompts at 128 tokens),
    looked up by the persona's text: no model is run;
  * `measure` — on demand, on the current query: `SEEDS` no-preference answers of `TOKENS` tokens,
    scored under each persona and the placebo. A handful of answers to one query can show a KL
    gap; it cannot decide a meter shift (that needs many prompts: `eval sensitivity --meters`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

from ..engine.loading import BUNDLED
from ..engine.settings import DecodeSettings
from ..evaluation.self_judge.sensitivity import sensitivity, verdict
from ..paths import DATA
from ..presets import presets

# The tables measured and shipped: (file, the model's short name) per model id (the bundled model by its two ids).
SHIPPED = {model_id: (DATA / "sensitivity_bundled.json", "SmolLM2-135M")
           for model_id in (BUNDLED, "HuggingFaceTB/SmolLM2-135M-Instruct")}
SEEDS = 4  # no-preference answers to the current query, measured on demand
TOKENS = 48  # tokens each


def _shipped_entry(model_id: str | None) -> tuple:
    """(table file, short name) of a model (the bundled one when none is named), or (None, the id)."""
    return SHIPPED.get((model_id or "").strip() or BUNDLED, (None, model_id))


@lru_cache(maxsize=4)
def _table(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def shipped(model_id: str | None) -> dict | None:
    """The sensitivity table shipped for a model, or None."""
    path, _ = _shipped_entry(model_id)
    return _table(str(path)) if path is not None and path.is_file() else None


def known(model_id: str | None, preferences: Mapping[str, str]) -> list[str] | None:
    """A sentence per persona (labelled A, B, ...) from the shipped table, or None when nothing was
    measured for this model; a persona whose text the table lacks says so."""
    table = shipped(model_id)
    if table is None:
        return None
    _, name = _shipped_entry(model_id)
    by_text = {entry["text"]: (persona, entry) for persona, entry in table["personas"].items()}
    sentences = []
    for label, text in preferences.items():
        found = by_text.get(text.strip())
        if found is None:
            sentences.append(f"{label}: this text was not measured for {name}; measure it on this query below.")
        else:
            persona, entry = found
            sentences.append(f"{label}: " + verdict(persona, entry, name, table["placebo_kl"]["mean"]))
    return sentences


def picker_note(model_id: str | None) -> str:
    """For the persona pickers: which persona presets the shipped table found the model not to follow."""
    table = shipped(model_id)
    if table is None:
        return ""
    names = [name for name in presets().personas if name in table["personas"]]
    weak = [name for name in names if not table["personas"][name]["followed"]]
    _, model = _shipped_entry(model_id)
    return (f"{model} measurably follows {len(names) - len(weak)} of these {len(names)} personas; not "
            f"{', '.join(weak)} (\"Did it work?\" says more)." if weak else
            f"{model} measurably follows all {len(names)} of these personas.")


def table_note(model_id: str | None) -> str:
    """What the shipped table's numbers rest on."""
    table = shipped(model_id)
    if table is None:
        return ""
    s = table["settings"]
    return (f"Measured on {table['n']} answers with no preference to {table.get('prompts', {}).get('n', table['n'])} "
            f"koala prompts, {s['max_new_tokens']} tokens, against a placebo preference that asks for nothing "
            "(`python -m pjudge_core eval sensitivity --all-presets`).")


def measure(lm, query, preferences: Mapping[str, str], base: DecodeSettings | None = None) -> dict:
    """On the current query: `SEEDS` no-preference answers of `TOKENS` tokens, KL under each persona and the placebo."""
    settings = (base or DecodeSettings()).replace(max_new_tokens=TOKENS, seed=None, stop=())
    return sensitivity(lm, [query], dict(preferences), settings=settings, seeds=range(SEEDS), rows=SEEDS)


def short_name(model_id: str | None, loaded_name: str) -> str:
    """The name the sentences give a model: the shipped table's short one where there is one."""
    path, name = _shipped_entry(model_id)
    return name if path is not None else loaded_name


def measured_sentences(result: dict, model_name: str) -> list[str]:
    """A sentence per persona of `measure`'s result, the persona named by its preset's name, or else
    by the start of its text."""
    names = {persona.text.strip(): name for name, persona in presets().personas.items()}
    return [f"{label}: " + verdict(names.get(entry["text"].strip(), _short(entry["text"])), entry, model_name,
                                   result["placebo_kl"]["mean"])
            for label, entry in result["personas"].items()]


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def sample_note(result: dict) -> str:
    return (f"On this query: {result['n']} answers with no preference, {result['settings']['max_new_tokens']} tokens "
            "each, scored under each persona and under a placebo preference that asks for nothing (95% interval "
            "over the answers). Enough to show a gap in how the model's distributions move; not enough to decide "
            "a change in reading grade, length or sentiment, which needs many prompts "
            "(`python -m pjudge_core eval sensitivity --meters`).")
