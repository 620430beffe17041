"""Batch generation: many prompts x several methods into one JSONL file, resumable.

`read_prompts(path)` accepts
  * a JSON list (the P-Soups koala file): ``[{"id": ..., "prompt": ...}, ...]`` (plain strings
    are accepted too; their id is their position),
  * JSONL: one object per line with ``prompt`` and an optional ``id`` (default: the line number),
  * plain text: one prompt per line, id = the line number (blank lines are skipped).
Bad input is an `InputError` naming the line.

`run_batch` writes one JSON line per (prompt id, method): ``id, index, prompt, method, text,
settings, stats, run`` (and ``steps`` with ``trace=True``). Every record is written whole,
flushed and fsync'ed, so a killed run loses at most the record in flight. With ``resume=True``
the records already in the output are skipped (keyed by (id, method)); a truncated last line
(the record that was being written when the run died) is cut off first. The per-record seed is
derived from the run seed and the prompt's index only, so a resumed run writes the records an
uninterrupted run would have written; both methods get the same seed for the same prompt
(common random numbers make the paired comparison less noisy).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import InputError

METHODS = ("persona-judge", "direct")


# --------------------------------------------------------------------------- input

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


def record_seed(seed: int | None, index: int) -> int | None:
    """A per-prompt seed from the run seed and the prompt's position (None stays None: random)."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"pjudge-batch:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    items = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not items:
        raise InputError("No methods given; use --methods persona-judge,direct.")
    for m in items:
        if m not in METHODS:
            raise InputError(f"Unknown method {m!r}; known methods: {', '.join(METHODS)}.")
    return list(dict.fromkeys(items))


def run_batch(
    lm,
    prompts: list[dict],
    pref_a: str,
    pref_b: str,
    out_path: str | os.PathLike,
    *,
    methods: Sequence[str] = METHODS,
    resume: bool = False,
    overwrite: bool = False,
    lam: int = 4,
    trace: bool = False,
    max_new_tokens: int = 128,
    temperature: float = 0.9,
    top_k: int = 20,
    top_p: float = 0.9,
    greedy: bool = False,
    seed: int | None = 0,
    progress: bool | Callable = True,
) -> dict:
    """Generate every (prompt, method) not yet in `out_path`; returns a summary dict."""
    from .decoding import direct_prompt, persona_judge

    methods = parse_methods(methods)
    for text, what in ((pref_a, "Preference A"), (pref_b, "Preference B")):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{what} is empty; pass --pref-a and --pref-b, or --preset NAME.")
    if not prompts:
        raise InputError("There are no prompts to run.")
    out_path = Path(out_path)
    run = {"model": lm.name, "pref_a": pref_a, "pref_b": pref_b, "max_new_tokens": max_new_tokens,
           "lam": lam, "temperature": temperature, "top_k": top_k, "top_p": top_p, "greedy": greedy,
           "seed": seed}
    done: set[tuple[str, str]] = set()
    if out_path.exists() and out_path.stat().st_size > 0:
        if resume:
            existing = read_records(out_path, repair=True)
            for rec in existing:
                old = rec.get("run")
                if old is not None and old != run:
                    diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
                    raise InputError(f"{out_path} was written with different settings ({', '.join(diff)}); "
                                     "use the same settings to resume, or write to a new file.")
                done.add((str(rec.get("id")), rec.get("method")))
        elif not overwrite:
            raise InputError(f"{out_path} already exists; pass --resume to continue it or --overwrite to start over.")
        else:
            out_path.unlink()
    out_path.parent.mkdir(parents=True, exist_ok=True)

    todo = [(i, p, m) for i, p in enumerate(prompts) for m in methods if (p["id"], m) not in done]
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), file=sys.stderr, unit="record", dynamic_ncols=True)
    started = time.perf_counter()
    written = 0
    try:
        with open(out_path, "a", encoding="utf-8") as fh:
            for k, (index, item, method) in enumerate(todo):
                kwargs = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                              top_p=top_p, greedy=greedy, seed=record_seed(seed, index))
                if method == "persona-judge":
                    result = persona_judge(lm, item["prompt"], pref_a, pref_b, lam=lam, **kwargs)
                else:
                    result = direct_prompt(lm, item["prompt"], [pref_a, pref_b], **kwargs)
                record = {"id": item["id"], "index": index, "prompt": item["prompt"], "method": method,
                          "text": result.text, "settings": result.settings, "stats": result.stats, "run": run}
                if trace:
                    record["steps"] = [s.to_dict() for s in result.steps]
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                written += 1
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(k + 1, len(todo))
    finally:
        if bar is not None:
            bar.close()
    return {"out": str(out_path), "written": written, "skipped": len(done),
            "total": len(prompts) * len(methods), "seconds": time.perf_counter() - started}
