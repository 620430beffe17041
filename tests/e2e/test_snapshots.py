"""What users and clients see, pinned: the app's API (endpoints, parameter names and order), every
command's ``--help``, and the keys of the records a run writes. A change here changes what a
client, a script or a stored record relies on: it has to be deliberate, so these tests compare with
files under ``tests/snapshots/`` and fail on any difference.

To accept a deliberate change, run them with ``PJUDGE_UPDATE_SNAPSHOTS=1`` (they then write the
files and fail, so an update never passes unnoticed) and review the diff of ``tests/snapshots/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from pathlib import Path

import pytest
from conftest import serve_app
from gradio_client import Client

from pjudge_core import DecodeSettings, generate
from pjudge_core.cli import build_parser
from pjudge_core.evaluation.runs.batch import run_batch

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("PJUDGE_UPDATE_SNAPSHOTS") == "1"
QUERY, PREFS = "Describe a sunset.", ["be vivid", "be creative"]


def check(name: str, value) -> None:
    """`value` (JSON-able) equals the stored snapshot `name`."""
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"wrote {path}; review it and run again without PJUDGE_UPDATE_SNAPSHOTS")
    assert path.is_file(), f"no snapshot {path}: run once with PJUDGE_UPDATE_SNAPSHOTS=1 and review it"
    assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), (
        f"{name} changed; if that is deliberate, update tests/snapshots/ (see the module docstring)")


def keys(value):
    """The shape of a record: its keys, recursively (a list by the union of its items' keys)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        merged: dict = {}
        for item in value:
            for k, v in keys(item).items():
                merged[k] = v if k not in merged or not isinstance(v, dict) else {**merged[k], **v}
        return [dict(sorted(merged.items()))]
    return None


# --------------------------------------------------------------------------- the app's API

def api_shape(api: dict) -> dict:
    """Endpoints with their parameters (name, component, label, default) and returns (component,
    label), in order; not the types (the model list holds what this machine has cached). Gradio
    names an unlabelled output after its component's id ("value_46") and an unlabelled input by a
    counter ("parameter_3"); a client relies on neither (it passes parameters by name and reads
    returns by position), so those numbers are left out."""
    def label(text: str) -> str:
        return re.sub(r"^(value|parameter)_\d+$", r"\1_*", text)

    out = {}
    for name, endpoint in api["named_endpoints"].items():
        out[name] = {
            "parameters": [f"{p['parameter_name']}: {p['component']} {label(p['label'])!r}"
                           + (f" = {p['parameter_default']!r}" if p["parameter_has_default"] else "")
                           for p in endpoint["parameters"]],
            "returns": [f"{r['component']} {label(r['label'])!r}" for r in endpoint["returns"]],
        }
    out["unnamed"] = sorted(api["unnamed_endpoints"])
    return out


def test_the_apps_api_is_unchanged(tiny_lm):
    with serve_app({"tiny-test": tiny_lm}) as url:
        api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    check("app_api", api_shape(api))


# --------------------------------------------------------------------------- the command line

def help_texts() -> dict[str, str]:
    """`--help` of every command and subcommand, at a fixed width."""
    texts = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        texts[path] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    with _columns(100):
        walk(build_parser(), "python -m pjudge_core")
    return texts


@contextlib.contextmanager
def _columns(width: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def test_every_commands_help_is_unchanged():
    texts = help_texts()
    assert {"python -m pjudge_core generate", "python -m pjudge_core eval fit", "python -m pjudge_core table2"} <= set(texts)
    check("cli_help", {path: text.splitlines() for path, text in texts.items()})


# --------------------------------------------------------------------------- records

SPECS = ("persona-judge", "persona-judge-base", "official", "direct", "direct[A]", "direct[]", "fusion",
         "fusion(alpha=0.5)")


def test_result_records_keep_their_keys(tiny_lm):
    from pjudge_core.engine.specs import RunSpec

    shapes = {}
    for spec in SPECS:
        result = RunSpec.parse(spec).run(tiny_lm, QUERY, PREFS, DecodeSettings(seed=3, max_new_tokens=10))
        shapes[spec] = keys(result.to_dict())
    shapes["generate"] = keys(generate(tiny_lm, "persona-judge", QUERY, PREFS, DecodeSettings(seed=1)).to_dict())
    check("result_keys", shapes)


def test_batch_records_keep_their_keys(tiny_lm, tmp_path):
    out = tmp_path / "run.jsonl"
    run_batch(tiny_lm, [{"id": "1", "prompt": QUERY}], PREFS, out, specs=",".join(SPECS),
              settings=DecodeSettings(seed=0, max_new_tokens=8), progress=False, trace=True)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    check("batch_record_keys", {r["spec"]: keys(r) for r in sorted(records, key=lambda r: r["spec"])})


def test_the_apps_run_record_keeps_its_keys(tiny_lm):
    from pjudge_core.ui import lab

    with serve_app({"tiny-test": tiny_lm}) as url:
        client = Client(url, verbose=False)
        slots = [slot for _, slot in lab.method_choices(2)]
        job = client.submit("tiny-test", False, "vivid", PREFS[0], "creative", PREFS[1], QUERY, 4, "alternate",
                            False, 0.9, 20, 0.9, 16, 5, slots, 2, None, "", None, "", 0.5, "", 1.0, 0,
                            api_name="/run")
        job.result()
        download = job.outputs()[-1][len(lab.slots()) + 3]
        path = download["value"] if isinstance(download, dict) else download
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    panels = record.pop("panels")
    shape = keys(record)
    shape["panels"] = {p["slot"]: keys(p) for p in panels}
    shape["created"] = shape["model"] = None
    check("app_run_record_keys", shape)

