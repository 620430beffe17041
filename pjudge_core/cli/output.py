"""Output helpers shared by the scoring commands: result files, intervals, the common flags."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def write_json(data: dict | list, path: str | None) -> None:
    """Write `data` to `path` (if given) whole or not at all: a temporary file, then a rename."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def interval(d: dict, key: str = "mean") -> str:
    if d.get(key) is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d[key]:.4f}"
    return f"{d[key]:.4f}  [95% CI {d['low']:.4f}, {d['high']:.4f}]"


def add_output_arguments(p: argparse.ArgumentParser, device: bool = True) -> None:
    """--json, --all, --out, --quiet (and --device/--dtype/--trust-remote-code for a scoring model)."""
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--all", action="store_true", help="with --json: include per-item details")
    p.add_argument("--out", default=None, help="also write the full result as JSON (for `eval report --scores`)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if device:
        p.add_argument("--device", default="auto")
        p.add_argument("--dtype", default="auto")
        p.add_argument("--trust-remote-code", action="store_true")
