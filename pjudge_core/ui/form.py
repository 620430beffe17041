"""The lab form, declared once: its fields, the handlers that take them, and reading it.

The Run button and "Sample K per method" read the same form (the Compare tab's personas, query,
methods and decoding parameters). Its fields are declared once, here (`FIELDS`, in the order the
page passes them and the run API names them); from that list come the components a tab passes to
an event, the parameters of the handlers that take the form (`takes_form`: the API's parameter
names, which clients call by keyword), and the values a ZeroGPU duration estimate reads.
`read_form` validates the form once for both events, so a value the run refuses is refused with
the same sentence by the front. Everything a visitor can get wrong becomes an `InputError` (shown
in the page), before any model loads.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..engine.personas import LABELS, MAX_PERSONAS
from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec
from ..errors import InputError
from . import lab
from .access import Access

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Field:
    name: str  # the handler's parameter and the API's name
    default: object = REQUIRED  # what a handler takes when it is left out (where its signature allows one)


FIELDS = (
    Field("persona_a"), Field("pref_a"), Field("persona_b"), Field("pref_b"), Field("query"), Field("lam"),
    Field("roles"), Field("greedy"), Field("temperature"), Field("top_k"), Field("top_p"), Field("max_new_tokens"),
    Field("seed"), Field("methods", None), Field("n_personas", 2), Field("persona_c", None), Field("pref_c", ""),
    Field("persona_d", None), Field("pref_d", ""), Field("alpha", 0.0), Field("weights", ""),
    Field("repetition_penalty", None), Field("no_repeat_ngram_size", None), Field("reproducible", False),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
# The front samples answers of its own length ("tokens per answer"), so it takes every field but that one;
# and it takes `reproducible` after its own parameters, where that field arrived (clients pass them in order).
FRONT_FIELDS = tuple(f for f in FIELDS if f.name not in ("max_new_tokens", "reproducible"))

Values = Mapping[str, object]  # {field name: raw value}


def takes_form(fields: tuple[Field, ...] = FIELDS) -> Callable:
    """A handler ``fn(self, ..., form, ...)`` exposed with one parameter per field in place of `form`
    (Gradio and ZeroGPU read the parameters, and API callers pass them by name); it receives them
    as one mapping {field: value}. A field keeps its default only where every later parameter has one."""
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("form")
        later = params[at + 1:]
        defaults = all(p.default is not REQUIRED for p in later)
        expanded = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      default=f.default if defaults else REQUIRED) for f in fields]
        defaults_from = next((i for i, p in enumerate(expanded) if p.default is not REQUIRED), len(expanded))
        expanded = [p.replace(default=REQUIRED) if i < defaults_from else p for i, p in enumerate(expanded)]
        exposed = signature.replace(parameters=params[:at] + expanded + later)
        names = [f.name for f in fields]

        def call(args, kwargs):
            bound = exposed.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            form = {name: arguments.pop(name) for name in names}
            return fn(**arguments, form=form)

        if inspect.isgeneratorfunction(fn):  # Gradio streams a generator function's yields
            @functools.wraps(fn)
            def handler(*args, **kwargs):
                return (yield from call(args, kwargs))
        else:
            @functools.wraps(fn)
            def handler(*args, **kwargs):
                return call(args, kwargs)

        handler.__signature__ = exposed
        return handler
    return decorate


def values_of(arguments: Values) -> dict[str, object]:
    """The form's fields among a handler's bound arguments."""
    return {name: arguments[name] for name in FIELD_NAMES if name in arguments}


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


def read_form(access: Access, values: Values) -> LabForm:
    """The form (`values`: {field: raw value}; missing fields take their defaults) as a `LabForm`,
    or an `InputError` naming the first bad value."""
    form = {f.name: f.default for f in FIELDS if f.default is not REQUIRED} | dict(values)
    count = number(form["n_personas"], "The number of personas", 2, whole=True)
    if not 2 <= count <= MAX_PERSONAS:
        raise InputError(f"Between 2 and {MAX_PERSONAS} personas can be compared; got {count}.")
    roles = form["roles"]
    if roles not in ("alternate", "fixed"):
        raise InputError(f"Roles must be 'alternate' or 'fixed'; got {roles!r}.")
    methods = form["methods"]
    methods = lab.default_slots() if methods is None else [methods] if isinstance(methods, str) else list(methods)
    labels = LABELS[:count]
    preferences = {label: form[f"pref_{label.lower()}"] or "" for label in labels}
    names = {label: form[f"persona_{label.lower()}"] or "custom" for label in labels}
    settings = DecodeSettings.from_inputs(
        lam=form["lam"], alternate=(roles != "fixed"), greedy=form["greedy"], temperature=form["temperature"],
        top_k=form["top_k"], top_p=form["top_p"], max_new_tokens=form["max_new_tokens"], seed=form["seed"],
        repetition_penalty=form["repetition_penalty"], no_repeat_ngram_size=form["no_repeat_ngram_size"],
        reproducible=form["reproducible"])
    slots = lab.slots()
    unknown = sorted(set(map(str, methods)) - set(slots))
    if unknown:
        raise InputError(f"Unknown method {unknown[0]!r}; known: {', '.join(slots)}.")
    chosen = [m for m in slots if m in methods]
    if not chosen:
        raise InputError("Tick at least one method to compare.")
    weights = lab.parse_weights(form["weights"], count)
    alpha = number(form["alpha"], "Fusion α", 0.0)
    specs = {slot: lab.slot_spec(slot, alpha=alpha, weights=weights, alternate=settings.alternate) for slot in chosen}
    for spec in specs.values():
        spec.check(preferences, settings)
    access.check_run(form["query"], preferences, settings)
    return LabForm(names=names, preferences=preferences, settings=settings, specs=specs)
