"""Personas are labelled "A", "B", "C", "D" in the order given: the labels every method, trace,
record and page uses, defined here once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError

LABELS = ("A", "B", "C", "D")
MAX_PERSONAS = len(LABELS)


def labelled(preferences: Sequence[str] | Mapping[str, str] | str) -> dict[str, str]:
    """{label: text}: a list is labelled A, B, C, D in order; a dict keeps its labels."""
    if isinstance(preferences, str):
        preferences = [preferences]
    if isinstance(preferences, Mapping):
        items = dict(preferences)
        bad = [k for k in items if k not in LABELS]
        if bad:
            raise InputError(f"Persona labels must be among {', '.join(LABELS)}; got {', '.join(map(str, bad))}.")
    else:
        items = dict(zip(LABELS, preferences))
        if len(preferences) > len(LABELS):
            raise InputError(f"At most {len(LABELS)} personas are supported; got {len(preferences)}.")
    for label, text in items.items():
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"Preference {label} is empty; write a preference text or pick a preset.")
    return items
