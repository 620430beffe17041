"""Preset personas, preference pairs, models and example queries, read from the JSON files in
``presets/`` (next to this package, or ``$PJUDGE_PRESETS``).

    from pjudge_core.presets import pair, persona_text
    pref_a, pref_b = pair("vivid + creative")

Files (adding a preset = adding an entry):
  * ``personas.json``: ``{"personas": {name: {"text": str, "group": str}}}``
  * ``pairs.json``:    ``{"pairs": {name: {"a": persona name, "b": persona name, "about": str}}}``
  * ``models.json``:   ``{"models": [{"id": str, "label"?: str, "size"?: str, "note"?: str,
    "spaces_default"?: bool}]}``
  * ``queries.json``:  ``{"queries": [str, ...]}``

Every problem in a file is an `InputError` with one readable sentence naming the file and entry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import InputError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass(frozen=True)
class Persona:
    name: str
    text: str
    group: str = ""


@dataclass(frozen=True)
class Pair:
    name: str
    a: str  # persona names
    b: str
    about: str = ""


@dataclass(frozen=True)
class ModelPreset:
    id: str
    label: str
    size: str = ""
    note: str = ""
    spaces_default: bool = False


@dataclass
class Presets:
    personas: dict[str, Persona] = field(default_factory=dict)
    pairs: dict[str, Pair] = field(default_factory=dict)
    models: list[ModelPreset] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    directory: Path | None = None


def presets_dir(directory: str | os.PathLike | None = None) -> Path:
    if directory is not None:
        return Path(directory)
    return Path(os.environ.get("PJUDGE_PRESETS") or DEFAULT_DIR)


def _read(path: Path, key: str, kind: type, required: bool = True):
    if not path.exists():
        if required:
            raise InputError(f"Preset file {path} is missing.")
        return kind()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"Preset file {path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}).") from exc
    if not isinstance(data, dict) or key not in data:
        raise InputError(f"Preset file {path.name} must be a JSON object with a {key!r} entry.")
    value = data[key]
    if not isinstance(value, kind):
        raise InputError(f"In {path.name}, {key!r} must be a JSON {'object' if kind is dict else 'list'}.")
    return value


def _text(value, where: str, what: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"{where}: {what} must be a non-empty string.")
    return value.strip()


def load_presets(dir: str | os.PathLike | None = None) -> Presets:  # noqa: A002 (the brief's name)
    """Read and validate every preset file in `dir` (default: the project's ``presets/``)."""
    root = presets_dir(dir)
    if not root.is_dir():
        raise InputError(f"Preset folder {root} does not exist.")
    out = Presets(directory=root)

    for name, entry in _read(root / "personas.json", "personas", dict).items():
        where = f"personas.json, persona {name!r}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object with a 'text' field.")
        _text(name, "personas.json", "every persona name")
        out.personas[name] = Persona(name, _text(entry.get("text"), where, "'text'"),
                                     _text(entry.get("group"), where, "'group'", required=False))
    if not out.personas:
        raise InputError("personas.json defines no personas.")

    for name, entry in _read(root / "pairs.json", "pairs", dict, required=False).items():
        where = f"pairs.json, pair {name!r}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object with 'a' and 'b' persona names.")
        a = _text(entry.get("a"), where, "'a'")
        b = _text(entry.get("b"), where, "'b'")
        for side, persona in (("a", a), ("b", b)):
            if persona not in out.personas:
                raise InputError(f"{where}: {side!r} names the unknown persona {persona!r}; known personas: "
                                 f"{', '.join(sorted(out.personas))}.")
        out.pairs[name] = Pair(name, a, b, _text(entry.get("about"), where, "'about'", required=False))

    seen: set[str] = set()
    for i, entry in enumerate(_read(root / "models.json", "models", list, required=False)):
        where = f"models.json, entry {i + 1}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object with an 'id'.")
        model_id = _text(entry.get("id"), where, "'id'")
        if model_id in seen:
            raise InputError(f"{where}: model {model_id!r} is listed twice.")
        seen.add(model_id)
        out.models.append(ModelPreset(
            model_id, _text(entry.get("label"), where, "'label'", required=False) or model_id,
            _text(entry.get("size"), where, "'size'", required=False),
            _text(entry.get("note"), where, "'note'", required=False),
            bool(entry.get("spaces_default", False)),
        ))

    for i, query in enumerate(_read(root / "queries.json", "queries", list, required=False)):
        out.queries.append(_text(query, f"queries.json, entry {i + 1}", "the query"))
    return out


@lru_cache(maxsize=4)
def _cached(directory: str) -> Presets:
    return load_presets(directory)


def presets(dir: str | os.PathLike | None = None) -> Presets:  # noqa: A002
    """`load_presets`, cached per folder (the app and CLI call this)."""
    return _cached(str(presets_dir(dir)))


def persona_names(dir=None) -> list[str]:
    return list(presets(dir).personas)


def pair_names(dir=None) -> list[str]:
    return list(presets(dir).pairs)


def persona_text(name: str, dir=None) -> str:
    """The preference text of a persona preset; `InputError` listing the known names otherwise."""
    known = presets(dir).personas
    if name not in known:
        raise InputError(f"Unknown persona preset {name!r}; known personas: {', '.join(known)}.")
    return known[name].text


def pair(name: str, dir=None) -> tuple[str, str]:
    """(pref_a, pref_b) texts of a ready-made pair; `InputError` listing the known names otherwise."""
    data = presets(dir)
    if name not in data.pairs:
        raise InputError(f"Unknown preset pair {name!r}; known pairs: {', '.join(data.pairs)}.")
    p = data.pairs[name]
    return data.personas[p.a].text, data.personas[p.b].text


def pair_personas(name: str, dir=None) -> tuple[str, str]:
    """(persona name A, persona name B) of a ready-made pair."""
    data = presets(dir)
    if name not in data.pairs:
        raise InputError(f"Unknown preset pair {name!r}; known pairs: {', '.join(data.pairs)}.")
    return data.pairs[name].a, data.pairs[name].b


def model_presets(dir=None) -> list[ModelPreset]:
    return list(presets(dir).models)


def example_queries(dir=None) -> list[str]:
    return list(presets(dir).queries)
