"""The lab form, read once: raw field values -> personas, decoding settings and run specs.

The Run button and "Sample K per method" read the same form; `read_form` validates it once for
both, so a value the run refuses is refused with the same sentence by the front. Everything a
visitor can get wrong becomes an `InputError` (shown in the page), before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec
from ..errors import InputError
from . import lab
from .access import Access

MAX_PERSONAS = 4


@dataclass(frozen=True)
class LabForm:
    names: dict[str, str]  # {label: preset name or "custom"}
    preferences: dict[str, str]  # {label: preference text}
    settings: DecodeSettings
    specs: dict[str, RunSpec]  # {slot: the spec its panel runs}, in page order (`lab.slots()`)


def number(value, label: str, default: float, whole: bool = False) -> float | int:
    """A form value as a number; an empty field is `default`; anything else is a readable error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a number; got {value!r}.") from None
    if whole and result != int(result):
        raise InputError(f"{label} must be a whole number; got {value!r}.")
    return int(result) if whole else result


def read_form(access: Access, *, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
              top_k, top_p, max_new_tokens, seed, methods, n_personas=2, persona_c=None, pref_c="", persona_d=None,
              pref_d="", alpha=0.0, weights="", repetition_penalty=None, no_repeat_ngram_size=None) -> LabForm:
    """The form as a `LabForm`, or an `InputError` naming the first bad value."""
    count = number(n_personas, "The number of personas", 2, whole=True)
    if not 2 <= count <= MAX_PERSONAS:
        raise InputError(f"Between 2 and {MAX_PERSONAS} personas can be compared; got {count}.")
    if roles not in ("alternate", "fixed"):
        raise InputError(f"Roles must be 'alternate' or 'fixed'; got {roles!r}.")
    methods = [methods] if isinstance(methods, str) else list(methods or [])
    texts = {"A": pref_a, "B": pref_b, "C": pref_c, "D": pref_d}
    chosen_names = {"A": persona_a, "B": persona_b, "C": persona_c, "D": persona_d}
    preferences = {label: texts[label] or "" for label in "ABCD"[:count]}
    names = {label: chosen_names[label] or "custom" for label in preferences}
    settings = DecodeSettings.from_inputs(
        lam=lam, alternate=(roles != "fixed"), greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed, repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size)
    slots = lab.slots()
    unknown = sorted(set(map(str, methods)) - set(slots))
    if unknown:
        raise InputError(f"Unknown method {unknown[0]!r}; known: {', '.join(slots)}.")
    chosen = [m for m in slots if m in methods]
    if not chosen:
        raise InputError("Tick at least one method to compare.")
    weight_values = lab.parse_weights(weights, count)
    specs = {slot: lab.slot_spec(slot, alpha=number(alpha, "Fusion α", 0.0), weights=weight_values,
                                 alternate=settings.alternate) for slot in chosen}
    for spec in specs.values():
        spec.check(preferences, settings)
    access.check_run(query, preferences, settings)
    return LabForm(names=names, preferences=preferences, settings=settings, specs=specs)
