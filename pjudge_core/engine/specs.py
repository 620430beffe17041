"""Run specs: a method, its options and its personas, written as one short string.

    persona-judge                    every persona, roles rotating (Algorithm 1)
    persona-judge-base               = persona-judge(alternate=false): A drafts, B judges
    persona-judge(lam=2)             a decoding setting overridden for this spec only
    direct                           every preference combined into one prompt
    direct[A]                        persona A alone          direct[]   no preference
    fusion                           product-of-experts, equal weights (α = 0)
    fusion(alpha=0.5,weights=2:1)    contrast with no preference, A weighted twice B
    official                         the official code's behaviour (not Algorithm 1)
    persona-judge[A,C]               a subset of the personas, keeping their labels

Grammar: ``method[labels](key=value,...)``; both brackets are optional. Keys are the method's
options (fusion: ``alpha``, ``weights`` as ``w1:w2:...``) or `DecodeSettings` fields other than
``seed``, ``max_new_tokens`` and ``stop`` (those belong to the whole run). Several specs are separated by
commas at the top level: ``persona-judge,direct,fusion(alpha=0.5,weights=2:1)``.

`RunSpec.key` is the canonical string (records store it; reports group by it, so
Persona-judge and Persona-judge-Base never merge), `.label` the human name, `.slug` a
lower-case id for HTML. Parsing never needs a model; `check` validates a spec against the
number of personas before anything is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError
from .api import prepare, stream_job
from .job import Job
from .methods import METHODS, check_request, method_named, variant
from .personas import LABELS, labelled
from .prompting import Query
from .settings import DecodeSettings
from .trace import Result, Stream

SETTING_KEYS = tuple(f for f in DecodeSettings.__dataclass_fields__ if f not in ("seed", "max_new_tokens", "stop"))
_SPEC = re.compile(r"^\s*([a-z][a-z-]*)\s*(?:\[([^\]]*)\])?\s*(?:\(([^)]*)\))?\s*$")
# Short names of the settings in a spec's label; a method names its own options (`Method.option_labels`).
SETTING_LABELS = {"lam": "λ", "temperature": "T", "top_k": "top-k", "top_p": "top-p", "repetition_penalty": "rep",
                  "no_repeat_ngram_size": "no-repeat", "greedy": "greedy", "alternate": "alternate"}


@dataclass(frozen=True)
class RunSpec:
    method: str
    personas: tuple[str, ...] | None = None  # None: every persona given to the run
    options: tuple[tuple[str, object], ...] = ()  # sorted (key, value): method options and setting overrides

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, text: str) -> "RunSpec":
        if isinstance(text, RunSpec):
            return text
        match = _SPEC.match(str(text).strip().lower()) if isinstance(text, str) else None
        if not match:
            raise InputError(f"Cannot read the run spec {text!r}; write e.g. persona-judge, direct[A] or "
                             "fusion(alpha=0.5,weights=2:1).")
        name, labels, options = match.groups()
        found = variant(name)
        if found is None:
            known = ", ".join(list(METHODS) + [v for m in METHODS.values() for v in m.variants])
            raise InputError(f"Unknown method {name!r} in run spec {text!r}; known: {known}.")
        method, values = found
        personas = None if labels is None else _labels(labels, text)
        for item in filter(None, (part.strip() for part in (options or "").split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not raw.strip():
                raise InputError(f"Run spec {text!r}: write options as key=value, got {item!r}.")
            if key not in method.options and key not in SETTING_KEYS:
                allowed = ", ".join(method.options + SETTING_KEYS)
                raise InputError(f"Run spec {text!r}: {method.name} has no option {key!r}; allowed: {allowed}.")
            values[key] = _value(method, key, raw.strip(), text)
        # Defaults are not part of the name: fusion(alpha=0,weights=1:1) is plain fusion.
        values = method.drop_defaults(values)
        spec = cls(method.name, personas, tuple(sorted(values.items())))
        spec.settings(DecodeSettings())  # a bad setting value fails here, with the field's message
        return spec

    # ------------------------------------------------------------------ names
    @property
    def option_dict(self) -> dict:
        return dict(self.options)

    @property
    def key(self) -> str:
        options = self.option_dict
        name = self.method
        for alias, implied in method_named(self.method).variants.items():
            if all(options.get(k) == v for k, v in implied.items()):
                name = alias
                for k in implied:
                    options.pop(k)
        text = name
        if self.personas is not None:
            text += "[" + ",".join(self.personas) + "]"
        if options:
            text += "(" + ",".join(f"{k}={_format(v)}" for k, v in sorted(options.items())) + ")"
        return text

    @property
    def label(self) -> str:
        method = method_named(self.method)
        name, options, show_personas = method.spec_title(self.personas, self.option_dict)
        short = {**SETTING_LABELS, **method.option_labels}
        details = [",".join(self.personas)] if show_personas else []
        details += [f"{short.get(k, k)}={_format(v)}" for k, v in sorted(options.items())]
        return f"{name} ({'; '.join(details)})" if details else name

    @property
    def slug(self) -> str:
        key = self.key.replace("[]", "-none")
        return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")

    def __str__(self) -> str:
        return self.key

    # ------------------------------------------------------------------ use
    def settings(self, base: DecodeSettings) -> DecodeSettings:
        """`base` with this spec's setting overrides."""
        changes = {k: v for k, v in self.options if k in SETTING_KEYS}
        return base.replace(**changes) if changes else base

    def method_options(self) -> dict:
        return {k: v for k, v in self.options if k in method_named(self.method).options}

    def preferences(self, preferences: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
        """The run's {label: text} narrowed to this spec's personas."""
        prefs = labelled(preferences)
        if self.personas is None:
            return prefs
        missing = [label for label in self.personas if label not in prefs]
        if missing:
            raise InputError(f"Run spec {self.key} names persona {missing[0]}, but the run has "
                             f"{len(prefs)} preference{'s' if len(prefs) != 1 else ''} ({', '.join(prefs) or 'none'}).")
        return {label: prefs[label] for label in self.personas}

    def check(self, preferences: Sequence[str] | Mapping[str, str], base: DecodeSettings) -> None:
        """Everything `stream` would refuse, refused now, without a model."""
        check_request(self.method, self.preferences(preferences), self.settings(base), self.method_options())

    def job(self, lm, query: Query, preferences, base: DecodeSettings | None = None, *,
            ignore_eos: bool = False, options: Mapping | None = None) -> Job:
        """This spec's run made ready for an `Engine` (validated; no forward yet); `options` are
        method options over the spec's own (fusion: weights, alpha)."""
        base = base or DecodeSettings()
        return prepare(lm, self.method, query, self.preferences(preferences), self.settings(base),
                       ignore_eos=ignore_eos, **{**self.method_options(), **dict(options or {})})

    def stream(self, lm, query: Query, preferences, base: DecodeSettings | None = None, *,
               ignore_eos: bool = False) -> Stream:
        return stream_job(lm, self.job(lm, query, preferences, base, ignore_eos=ignore_eos))

    def run(self, lm, query: Query, preferences, base: DecodeSettings | None = None) -> Result:
        return self.stream(lm, query, preferences, base).run()


def parse_specs(text: str | Sequence[str]) -> list[RunSpec]:
    """Specs from a comma-separated string (commas inside brackets belong to a spec) or a list."""
    parts = split_top_level(text) if isinstance(text, str) else list(text)
    specs = [RunSpec.parse(p) for p in parts if not (isinstance(p, str) and not p.strip())]
    if not specs:
        raise InputError("No run spec given; e.g. persona-judge,direct.")
    keys = [s.key for s in specs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise InputError(f"Run spec {duplicates[0]} is listed twice.")
    return specs


def split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _labels(text: str, spec: str) -> tuple[str, ...]:
    raw = text.replace(",", " ").upper().split()
    if raw == ["NONE"]:
        return ()
    if len(raw) == 1 and len(raw[0]) > 1:
        raw = list(raw[0])  # "AB" means A, B
    bad = [label for label in raw if label not in LABELS]
    if bad:
        raise InputError(f"Run spec {spec!r}: personas are labelled {', '.join(LABELS)}; got {bad[0]!r}.")
    if len(set(raw)) != len(raw):
        raise InputError(f"Run spec {spec!r} names a persona twice.")
    return tuple(raw)


def _value(method, key: str, raw: str, spec: str):
    if key in method.options and method.parse_option is not None:
        try:
            return method.parse_option(key, raw)
        except InputError as exc:
            raise InputError(f"Run spec {spec!r}: {exc}") from None
    if raw in ("true", "false"):
        return raw == "true"
    try:
        number = float(raw)
    except ValueError:
        raise InputError(f"Run spec {spec!r}: {key} must be a number or true/false, got {raw!r}.") from None
    default = DecodeSettings.__dataclass_fields__[key].default if key in SETTING_KEYS else None
    if isinstance(default, bool):
        raise InputError(f"Run spec {spec!r}: {key} must be true or false, got {raw!r}.")
    if isinstance(default, int) and number == int(number):
        return int(number)
    return number


def _format(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ":".join(_format(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
