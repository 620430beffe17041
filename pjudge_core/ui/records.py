"""Run records: everything about a lab run as compact JSON, and the file the download button offers.

One record holds the model, query, personas and shared settings once, then one entry per panel
with its run spec, text, settings, stats and trace. Steps are written without their empty
fields, and the file without indentation, so a four-panel run of 256 tokens stays small.
Persona fit goes under "fit"; a sampled front and an inferred persona, which the visitor adds
after (or without) a run, under "front" and "inference" (`with_section`), and a new run keeps
them (`carried_over`).

The files are bounded, so a long-lived deployment does not fill its disk: each write deletes the
records older than `KEEP_SECONDS` and all but the newest `KEEP_FILES` (Gradio serves its own copy
of each, which `app.py` has Gradio delete after the same hour).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..engine.trace import Result, Step

KEEP_SECONDS = 3600  # a record is downloadable for an hour
KEEP_FILES = 200  # and at most this many are on disk
PREFIX = "persona-judge-run-"


def compact_step(step: Step) -> dict:
    """A step's fields without the ones that are None (most fields belong to one method only)."""
    return {k: v for k, v in step.to_dict().items() if v is not None}


def panel_record(slot: str, spec_key: str, label: str, result: Result | None, steps: Iterable[Step],
                 stopped: bool = False) -> dict:
    """One panel: a finished run's Result, or the steps an interrupted one had produced."""
    steps = list(steps)
    entry = {"slot": slot, "spec": spec_key, "label": label, "finished": result is not None and not stopped}
    if result is not None:
        data = result.to_dict()
        entry.update(text=data["text"], token_ids=data["token_ids"], settings=data["settings"], stats=data["stats"])
        steps = result.steps
    else:
        entry.update(text="".join(s.text for s in steps), token_ids=[s.token_id for s in steps])
    entry["steps"] = [compact_step(s) for s in steps]
    return entry


def lab_record(*, model: str, query: str | None, personas: dict, settings: dict, panels: list[dict],
               extra: dict | None = None) -> dict:
    """The whole run as plain JSON-able data."""
    return {
        "app": "Persona-judge Studio",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "query": query,
        "personas": personas,
        "settings": settings,
        "panels": panels,
        **(extra or {}),
    }


def write_record(record: dict, directory: str | Path | None = None) -> str:
    """Write a run record to a new temporary ``.json`` file and return its path (the old ones pruned)."""
    directory = Path(directory or tempfile.gettempdir()) / "pjudge-runs"
    directory.mkdir(parents=True, exist_ok=True)
    prune(directory)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix=PREFIX, dir=directory,
                                     delete=False, encoding="utf-8") as fh:
        json.dump(_finite(record), fh, ensure_ascii=False, separators=(",", ":"))
        return fh.name


def prune(directory: Path, keep: int = KEEP_FILES, max_age_s: float = KEEP_SECONDS) -> None:
    """Delete the records in `directory` older than `max_age_s`, and beyond the newest `keep - 1`
    (room for the one about to be written). Another process may prune the same files: a file
    that is already gone is fine."""
    now = time.time()
    found = []
    for path in directory.glob(f"{PREFIX}*.json"):
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    found.sort(reverse=True)
    for i, (modified, path) in enumerate(found):
        if i >= keep - 1 or now - modified > max_age_s:
            path.unlink(missing_ok=True)


def _finite(value):
    """JSON has no inf/NaN: they become null (a q = 0 gives p/q = inf)."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


CARRIED = ("front", "inference")  # sections that outlive the run they were added to


def carried_over(previous: dict | None) -> dict:
    """The sections of the previous record a new run keeps (a front or an inference made earlier)."""
    return {k: previous[k] for k in CARRIED if isinstance(previous, dict) and k in previous}


def with_section(record: dict | None, key: str, value, *, model: str) -> dict:
    """`record` with one more section (a front, an inference); a record of its own when no run came first."""
    base = record if isinstance(record, dict) else lab_record(model=model, query=None, personas={}, settings={},
                                                              panels=[])
    return {**base, key: value}
