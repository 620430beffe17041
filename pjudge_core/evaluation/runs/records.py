"""Files of batch runs: prompts in, records out.

`read_prompts(path)` accepts
  * a JSON list (the P-Soups koala file): ``[{"id": ..., "prompt": ...}, ...]`` (plain strings
    are accepted too; their id is their position),
  * JSONL: one object per line with ``prompt`` and an optional ``id`` (default: the line number),
  * plain text: one prompt per line, id = the line number (blank lines are skipped).
`read_records(path)` reads a batch output (JSONL, one record per (prompt id, run spec)), ignoring
a truncated last line (the record a killed run was writing). Bad input is an `InputError`
naming the line. `spec_key(record)` is the run spec a record belongs to (records written before
run specs existed have only a method name); reports and scores group by it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...engine.methods import BASELINE, DEFAULT_METHOD
from ...errors import InputError

DEFAULT_PAIR = (DEFAULT_METHOD, BASELINE)  # the paper's comparison


def read_prompts(path: str | os.PathLike) -> list[dict]:
    """[{"id": str, "prompt": str}] from a JSON list, JSONL or plain-text file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Prompt file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"Prompt file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"Prompt file {str(path)!r} is empty.")
    if stripped.startswith("["):
        items = _read_json_list(path, text)
    elif stripped.startswith("{"):
        items = _read_jsonl(path, text)
    else:
        items = [{"id": str(n), "prompt": line.strip(), "line": n}
                 for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    seen: dict[str, int] = {}
    for item in items:
        if item["id"] in seen:
            raise InputError(f"{path}: line {item['line']}: duplicate id {item['id']!r} "
                             f"(first used on line {seen[item['id']]}).")
        seen[item["id"]] = item["line"]
    return [{"id": item["id"], "prompt": item["prompt"]} for item in items]


def _item(path: Path, obj, where: str, line: int, default_id: str) -> dict:
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if not isinstance(obj, dict):
        raise InputError(f"{path}: {where}: expected an object with a 'prompt', got {type(obj).__name__}.")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{path}: {where}: missing or empty 'prompt'.")
    pid = obj.get("id", default_id)
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise InputError(f"{path}: {where}: 'id' must be a string or a whole number.")
    return {"id": str(pid), "prompt": prompt, "line": line}


def _read_json_list(path: Path, text: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}).") from exc
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of prompts.")
    # Line numbers of list items: locate each item's start (good enough for error messages).
    decoder, lines, items = json.JSONDecoder(), [], []
    pos = text.index("[") + 1
    for _ in data:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        lines.append(text.count("\n", 0, pos) + 1)
        try:
            _, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
    for i, obj in enumerate(data):
        line = lines[i] if i < len(lines) else 0
        items.append(_item(path, obj, f"line {line} (item {i})", line, str(i)))
    return items


def _read_jsonl(path: Path, text: str) -> list[dict]:
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {n}: invalid JSON ({exc.msg}).") from exc
        items.append(_item(path, obj, f"line {n}", n, str(n)))
    return items


# --------------------------------------------------------------------------- output

def read_records(path: str | os.PathLike, *, repair: bool = False) -> list[dict]:
    """The JSON records of an output file.

    A last line that does not parse (or lacks its newline) is a record a killed run was writing:
    it is ignored, and with ``repair=True`` cut off the file. A bad line elsewhere is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Results file {str(path)!r} does not exist.")
    data = path.read_bytes()
    records, offset, good_end = [], 0, 0
    lines = data.split(b"\n")
    for n, raw in enumerate(lines, 1):
        is_last = n == len(lines)  # the piece after the final newline ('' when the file ends cleanly)
        end = offset + len(raw) + (0 if is_last else 1)
        if raw.strip():
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                if is_last:
                    raise ValueError("no trailing newline")  # written partially: flushed whole records end in \n
                records.append(obj)
                good_end = end
            except ValueError as exc:
                last_content = all(not rest.strip() for rest in lines[n:])
                if not last_content:
                    raise InputError(f"{path}: line {n} is not a JSON record ({exc}).") from exc
                if repair:
                    with open(path, "r+b") as fh:
                        fh.truncate(good_end)
                break
        else:
            good_end = end
        offset = end
    return records


def load_records(path: str | os.PathLike) -> list[dict]:
    """The records of a batch output, checked to look like one."""
    records = read_records(path)
    if not records:
        raise InputError(f"{path} holds no records; run `python -m pjudge_core batch` first.")
    for n, rec in enumerate(records, 1):
        if not isinstance(rec.get("text"), str) or "id" not in rec or not (rec.get("spec") or rec.get("method")):
            raise InputError(f"{path}: record {n} lacks id, spec or text; is this a batch output file?")
    return records


def spec_key(record: dict) -> str:
    """The run spec of a record (its method name for records written before specs existed)."""
    return record.get("spec") or record["method"]


def specs_in(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(spec_key(r) for r in records))


def pair_specs(records: list[dict], spec_a: str | None, spec_b: str | None) -> tuple[str, str]:
    """The two specs to compare: as given, else persona-judge vs direct, else the first two present."""
    present = specs_in(records)
    a = spec_a or (DEFAULT_PAIR[0] if DEFAULT_PAIR[0] in present else present[0])
    b = spec_b or (DEFAULT_PAIR[1] if DEFAULT_PAIR[1] in present else next((m for m in present if m != a), None))
    for m in (a, b):
        if m is None or m not in present:
            raise InputError(f"Run spec {m!r} has no records; the file holds: {', '.join(present)}.")
    if a == b:
        raise InputError("Comparing a run spec with itself; the file needs two specs.")
    return a, b
