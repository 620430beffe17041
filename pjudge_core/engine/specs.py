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
``seed`` and ``max_new_tokens`` (those belong to the whole run). Several specs are separated by
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
from .engine import Task
from .methods import LABELS, METHODS, OPTIONS, check_request, labelled, prepare, stream_task
from .settings import DecodeSettings
from .trace import Result, Stream

ALIASES = {"persona-judge-base": ("persona-judge", {"alternate": False}),
           "official-base": ("official", {"alternate": False})}
SETTING_KEYS = tuple(f for f in DecodeSettings.__dataclass_fields__ if f not in ("seed", "max_new_tokens"))
_SPEC = re.compile(r"^\s*([a-z][a-z-]*)\s*(?:\[([^\]]*)\])?\s*(?:\(([^)]*)\))?\s*$")
_GREEK = {"alpha": "α", "lam": "λ", "weights": "w", "temperature": "T", "top_k": "top-k", "top_p": "top-p",
          "repetition_penalty": "rep", "no_repeat_ngram_size": "no-repeat", "greedy": "greedy",
          "alternate": "alternate"}


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
        method, implied = ALIASES.get(name, (name, {}))
        if method not in METHODS:
            known = ", ".join(list(METHODS) + list(ALIASES))
            raise InputError(f"Unknown method {name!r} in run spec {text!r}; known: {known}.")
        personas = None if labels is None else _labels(labels, text)
        values = dict(implied)
        for item in filter(None, (part.strip() for part in (options or "").split(","))):
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not raw.strip():
                raise InputError(f"Run spec {text!r}: write options as key=value, got {item!r}.")
            if key not in OPTIONS[method] and key not in SETTING_KEYS:
                allowed = ", ".join(OPTIONS[method] + SETTING_KEYS)
                raise InputError(f"Run spec {text!r}: {method} has no option {key!r}; allowed: {allowed}.")
            values[key] = _value(key, raw.strip(), text)
        # Defaults are not part of the name: fusion(alpha=0,weights=1:1) is plain fusion.
        if values.get("alpha") == 0:
            del values["alpha"]
        if "weights" in values and len(set(values["weights"])) == 1:
            del values["weights"]
        spec = cls(method, personas, tuple(sorted(values.items())))
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
        for alias, (method, implied) in ALIASES.items():
            if method == self.method and all(options.get(k) == v for k, v in implied.items()):
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
        options = self.option_dict
        personas = self.personas
        if self.method == "direct":
            if personas is not None and len(personas) == 0:
                name = "No preference"
            elif personas is not None and len(personas) == 1:
                name = f"{personas[0]} alone"
            else:
                name = "Direct prompting"
        elif self.method == "persona-judge":
            name = "Persona-judge-Base" if options.pop("alternate", True) is False else "Persona-judge"
        elif self.method == "official":
            name = "Official code (fixed roles)" if options.pop("alternate", True) is False else "Official code"
        else:
            name = "Fusion"
            options.setdefault("alpha", 0.0)
        details = []
        if personas is not None and not (self.method == "direct" and len(personas) <= 1):
            details.append(",".join(personas))
        details += [f"{_GREEK.get(k, k)}={_format(v)}" for k, v in sorted(options.items())]
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
        return {k: v for k, v in self.options if k in OPTIONS[self.method]}

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

    def task(self, lm, query: str, preferences, base: DecodeSettings | None = None, *,
             ignore_eos: bool = False, options: Mapping | None = None) -> Task:
        """This spec's run made ready for an `Engine` (validated; no forward yet); `options` are
        method options over the spec's own (fusion: weights, alpha)."""
        base = base or DecodeSettings()
        return prepare(lm, self.method, query, self.preferences(preferences), self.settings(base),
                       ignore_eos=ignore_eos, **{**self.method_options(), **dict(options or {})})

    def stream(self, lm, query: str, preferences, base: DecodeSettings | None = None, *,
               ignore_eos: bool = False) -> Stream:
        return stream_task(lm, self.task(lm, query, preferences, base, ignore_eos=ignore_eos))

    def run(self, lm, query: str, preferences, base: DecodeSettings | None = None) -> Result:
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


def _value(key: str, raw: str, spec: str):
    if key == "weights":
        try:
            return tuple(float(w) for w in raw.split(":"))
        except ValueError:
            raise InputError(f"Run spec {spec!r}: weights are numbers separated by ':', e.g. weights=2:1.") from None
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
