"""Presets as validated data: personas, preference pairs, models and example queries.

The JSON files live in ``presets/`` next to this package (or a folder named by
``$PJUDGE_PRESETS``); adding a preset is adding an entry. Each file is read through a pydantic
model with ``extra="forbid"``, so a typo gives one sentence naming the file, the entry and the
field:

  * ``personas.json``: ``{"personas": {name: {"text": str, "group"?: str, "meter"?: {"name": str,
    "direction": "higher" | "lower"}}}}`` (``meter``: the independent meter that measures the persona
    and the direction that satisfies it; `evaluation.meters` checks the name)
  * ``pairs.json``:    ``{"pairs": {name: {"a": persona name, "b": persona name, "about"?: str}}}``
  * ``models.json``:   ``{"models": [{"id": str, "label"?, "size"?, "note"?, "offered_on"?: [hardware],
    "default_on"?: [hardware], "four_bit_on"?: [hardware], "zerogpu_token_s"?: float,
    "settings"?: {DecodeSettings field: value}}]}`` (``settings`` are the model's recommended
    decoding settings, which the app applies when the model is picked; ``offered_on`` /
    ``default_on`` / ``four_bit_on`` make a public deployment's allow-list, default and 4-bit
    forms per hardware: "zerogpu", "gpu" or "cpu"; ``zerogpu_token_s`` is what one decoded token
    of one panel costs on a ZeroGPU slice, from which a ZeroGPU call asks for its duration)
  * ``queries.json``:  ``{"queries": [str, ...]}``

A top-level ``"_about"`` string documents a file. Shared by the command line and the app.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from .engine.settings import DecodeSettings
from .errors import InputError, PJudgeError
from .paths import PRESETS

DEFAULT_DIR = PRESETS
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Hardware = Literal["zerogpu", "gpu", "cpu"]  # what a public deployment runs on (see ui/hosting.py)
HARDWARE: tuple[str, ...] = ("zerogpu", "gpu", "cpu")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeterTarget(_Strict):
    name: Text  # a meter of `evaluation.meters` (checked there: presets sit below the evaluation layer)
    direction: Literal["higher", "lower"]


class Persona(_Strict):
    text: Text
    group: str = ""
    meter: MeterTarget | None = None


class Pair(_Strict):
    a: Text  # persona names
    b: Text
    about: str = ""


class ModelPreset(_Strict):
    id: Text
    label: str = ""
    size: str = ""
    note: str = ""
    offered_on: tuple[Hardware, ...] = ()  # on the allow-list of a public deployment on that hardware
    default_on: tuple[Hardware, ...] = ()  # that deployment's default (the first one it can load)
    four_bit_on: tuple[Hardware, ...] = ()  # that deployment also offers it in 4-bit
    zerogpu_token_s: float | None = Field(None, gt=0)  # one decoded token of one panel on a ZeroGPU slice, s
    settings: dict[str, float | int | bool] = Field(default_factory=dict)
    # What the page opens with for this model: a ready-made pair (pairs.json) it measurably follows, and its
    # example queries (the first is the default); without them, the first pair and queries.json's queries.
    pair: str | None = None
    queries: tuple[Text, ...] = ()

    @field_validator("settings")
    @classmethod
    def _valid_settings(cls, value: dict) -> dict:
        try:
            DecodeSettings.from_inputs(**value)
        except PJudgeError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _offered_where_default(self) -> "ModelPreset":
        for field, hardware in (("default_on", self.default_on), ("four_bit_on", self.four_bit_on)):
            missing = [h for h in hardware if h not in self.offered_on]
            if missing:
                raise ValueError(f"{field} names {missing[0]!r}, where the model is not offered (offered_on)")
        return self

    @property
    def name(self) -> str:
        return self.label or self.id

    def decode_settings(self) -> DecodeSettings:
        return DecodeSettings.from_inputs(**self.settings)


class _PersonasFile(_Strict):
    about: str = Field("", alias="_about")
    personas: dict[Text, Persona] = Field(min_length=1)


class _PairsFile(_Strict):
    about: str = Field("", alias="_about")
    pairs: dict[Text, Pair]


class _ModelsFile(_Strict):
    about: str = Field("", alias="_about")
    models: list[ModelPreset]


class _QueriesFile(_Strict):
    about: str = Field("", alias="_about")
    queries: list[Text]


class Presets(_Strict):
    personas: dict[str, Persona]
    pairs: dict[str, Pair] = Field(default_factory=dict)
    models: list[ModelPreset] = Field(default_factory=list)
    queries: list[str] = Field(default_factory=list)
    directory: Path | None = None


ENTRY_WORDS = {"personas": "persona", "pairs": "pair", "models": "entry", "queries": "entry"}


def _where(file: str, loc: tuple) -> str:
    """'personas.json, persona 'x', field 'text'' from a pydantic error location."""
    parts = [file]
    if len(loc) >= 2:
        entry = loc[1]
        word = ENTRY_WORDS.get(loc[0], "entry")
        parts.append(f"{word} {entry + 1}" if isinstance(entry, int) else f"{word} {entry!r}")
    if len(loc) >= 3:
        parts.append(f"field {'.'.join(str(x) for x in loc[2:])!r}")
    elif len(loc) == 1:
        parts.append(f"field {loc[0]!r}")
    return ", ".join(parts)


def _message(file: str, error: ValidationError) -> str:
    # A misspelt field shows up as "unknown field" plus "missing field"; the typo is the news.
    first = sorted(error.errors(), key=lambda e: e.get("type") != "extra_forbidden")[0]
    loc = tuple(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        problem = "is not a known field (check its spelling)"
    elif kind == "missing":
        problem = "is missing"
    elif kind in ("string_too_short", "too_short"):
        problem = "must not be empty"
    else:
        problem = first.get("msg", "is invalid").removeprefix("Value error, ")
    return f"{_where(file, loc)}: {problem}."


def _read(path: Path, schema: type[BaseModel], required: bool = True):
    if not path.exists():
        if required:
            raise InputError(f"Preset file {path} is missing.")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"Preset file {path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}).") from exc
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InputError(_message(path.name, exc)) from None


def presets_dir(directory: str | os.PathLike | None = None) -> Path:
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get("PJUDGE_PRESETS") or DEFAULT_DIR)


def load_presets(directory: str | os.PathLike | None = None) -> Presets:
    """Read and validate every preset file in `directory` (default: the project's ``presets/``)."""
    root = presets_dir(directory)
    if not root.is_dir():
        raise InputError(f"Preset folder {root} does not exist.")
    personas = _read(root / "personas.json", _PersonasFile).personas
    pairs = getattr(_read(root / "pairs.json", _PairsFile, required=False), "pairs", {})
    for name, p in pairs.items():
        for side, persona in (("a", p.a), ("b", p.b)):
            if persona not in personas:
                raise InputError(f"pairs.json, pair {name!r}, field {side!r}: names the unknown persona "
                                 f"{persona!r}; known personas: {', '.join(sorted(personas))}.")
    models = getattr(_read(root / "models.json", _ModelsFile, required=False), "models", [])
    seen: set[str] = set()
    for i, m in enumerate(models):
        if m.id in seen:
            raise InputError(f"models.json, entry {i + 1}: model {m.id!r} is listed twice.")
        seen.add(m.id)
    for i, m in enumerate(models):
        if m.pair is not None and m.pair not in pairs:
            raise InputError(f"models.json, entry {i + 1} ({m.id}), field 'pair': names the unknown pair {m.pair!r}; "
                             f"known pairs: {', '.join(pairs)}.")
    offered = {h for m in models for h in m.offered_on}
    for hardware in sorted(offered - {h for m in models for h in m.default_on}):
        raise InputError(f"models.json: models are offered on {hardware!r} but none is its default (default_on).")
    queries = getattr(_read(root / "queries.json", _QueriesFile, required=False), "queries", [])
    return Presets(personas=personas, pairs=pairs, models=models, queries=queries, directory=root)


@lru_cache(maxsize=4)
def _cached(directory: str) -> Presets:
    return load_presets(directory)


def presets(directory: str | os.PathLike | None = None) -> Presets:
    """`load_presets`, cached per folder (the app and CLI call this)."""
    return _cached(str(presets_dir(directory)))


def persona_text(name: str, directory=None) -> str:
    """The preference text of a persona preset; `InputError` listing the known names otherwise."""
    known = presets(directory).personas
    if name not in known:
        raise InputError(f"Unknown persona preset {name!r}; known personas: {', '.join(known)}.")
    return known[name].text


def pair_personas(name: str, directory=None) -> tuple[str, str]:
    """(persona name A, persona name B) of a ready-made pair."""
    data = presets(directory)
    if name not in data.pairs:
        raise InputError(f"Unknown preset pair {name!r}; known pairs: {', '.join(data.pairs)}.")
    return data.pairs[name].a, data.pairs[name].b


def pair(name: str, directory=None) -> tuple[str, str]:
    """(pref_a, pref_b) texts of a ready-made pair; `InputError` listing the known names otherwise."""
    a, b = pair_personas(name, directory)
    personas = presets(directory).personas
    return personas[a].text, personas[b].text


def model_presets(directory=None) -> list[ModelPreset]:
    return list(presets(directory).models)


def model_preset(model_id: str, directory=None) -> ModelPreset | None:
    return next((m for m in presets(directory).models if m.id == model_id), None)


def example_queries(directory=None) -> list[str]:
    return list(presets(directory).queries)
