"""Run records: everything about an app run as plain JSON, and the file the download button offers."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from ..engine.trace import Result


def run_record(pj: Result | None, direct: Result | None, extra: dict | None = None) -> dict:
    """Everything about a run as plain JSON-able data: both texts, settings and the full trace."""
    return {
        "app": "Persona-judge Studio",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
        "persona_judge": pj.to_dict() if pj else None,
        "direct": direct.to_dict() if direct else None,
    }


def write_record(record: dict, directory: str | Path | None = None) -> str:
    """Write a run record to a new temporary ``.json`` file and return its path."""
    directory = Path(directory or tempfile.gettempdir()) / "pjudge-runs"
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="persona-judge-run-", dir=directory,
                                     delete=False, encoding="utf-8") as fh:
        json.dump(record, fh, ensure_ascii=False, indent=1, default=_json_default)
        return fh.name


def _json_default(value):
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    return str(value)
