"""Batch generation: many prompts x several run specs into one JSONL file, resumable.

`run_batch` writes one JSON line per (prompt id, run spec): ``id, index, prompt, spec,
spec_label, method, text, settings, stats, run`` (and ``steps`` with ``trace=True``). `rows`
records decode together in the batched engine (`engine.Engine`), each written as soon as it
finishes, so the lines come in the order records finish; the records themselves (token ids,
decisions) are the same for any `rows`. A record is made ready (validated, tokenised) only when a
row is about to free up, so memory stays bounded by `rows` whatever the number of prompts; one
that fails validation (e.g. a prompt too long for the context) is reported and skipped, the
others go on. Every record is written whole, flushed and fsync'ed, so a killed run loses at most
the records in flight. With
``resume=True`` the records already in the output are skipped (keyed by (id, spec)); a truncated
last line (the record that was being written when the run died) is cut off first, and a file
written with other preferences, model or settings is refused. The per-record seed is derived from
the run seed and the prompt's index only, so a resumed run writes the records an uninterrupted run
would have written; every spec gets the same seed for the same prompt (common random numbers make
the paired comparison less noisy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from ...engine.engine import DEFAULT_ROWS, Engine
from ...engine.methods import DEFAULT_SPECS
from ...engine.personas import labelled
from ...engine.requests import check_rows
from ...engine.settings import DecodeSettings
from ...engine.specs import RunSpec, parse_specs
from ...errors import InputError
from .records import read_records, spec_key
from .sharding import Processes


def record_seed(seed: int | None, index: int) -> int | None:
    """A per-prompt seed from the run seed and the prompt's position (None stays None: random)."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"pjudge-batch:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def run_batch(
    lm,
    prompts: list[dict],
    preferences: Sequence[str] | Mapping[str, str],
    out_path: str | os.PathLike,
    *,
    specs: str | Sequence[str | RunSpec] = DEFAULT_SPECS,
    settings: DecodeSettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    trace: bool = False,
    progress: bool | Callable = True,
    rows: int = DEFAULT_ROWS,
    processes: Processes | None = None,
) -> dict:
    """Generate every (prompt, spec) not yet in `out_path`, `rows` records at a time; returns a
    summary dict (``failed`` lists the records refused, with their reason).

    With `processes` (several launched by torchrun / accelerate launch) the records are split
    across them in rounds of ``2 × rows`` records per process; after each round the main process
    gathers the round's records and alone writes them, so a killed run loses at most a round and
    `resume` works with any number of processes. Each record is the one a single process writes.
    """
    processes = processes or Processes()
    settings = settings or DecodeSettings(seed=0)
    rows = check_rows(rows)
    specs = parse_specs(specs)
    prefs = labelled(preferences)
    for spec in specs:
        spec.check(prefs, settings)
    if not prompts:
        raise InputError("There are no prompts to run.")
    out_path = Path(out_path)
    run = {"model": lm.name, "preferences": prefs, "settings": settings.to_dict()}
    found = None
    if processes.is_main:  # the output file is the main process's alone
        try:
            found = {"done": sorted(_finished(out_path, run, resume, overwrite))}
        except InputError as exc:
            found = {"error": str(exc)}
    found = processes.broadcast(found)
    if "error" in found:
        raise InputError(found["error"])
    done = {tuple(key) for key in found["done"]}

    todo = [(i, p, s) for i, p in enumerate(prompts) for s in specs if (p["id"], s.key) not in done]
    bar = None
    if progress is True and processes.is_main:
        bar = tqdm(total=len(todo), file=sys.stderr, unit="record", dynamic_ncols=True)
    started = time.perf_counter()
    written, failed = [0], []

    def write(fh, records: list[dict]) -> None:
        for record in records:
            if "error" in record:
                failed.append(record)
                continue
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            written[0] += 1
        fh.flush()
        os.fsync(fh.fileno())
        if bar is not None:
            bar.update(len(records))
        elif callable(progress) and processes.is_main:
            progress(written[0] + len(failed), len(todo))

    def decode(chunk, on_records) -> None:
        decode_records(lm, chunk, prefs, settings, run, rows=rows, trace=trace, on_records=on_records)

    try:
        if processes.size == 1:
            with open(out_path, "a", encoding="utf-8") as fh:
                decode(todo, lambda records: write(fh, records))
        else:
            size, chunk = processes.size, 2 * rows
            chunks = [todo[k:k + chunk] for k in range(0, len(todo), chunk)]
            with open(out_path, "a", encoding="utf-8") if processes.is_main else contextlib.nullcontext() as fh:
                for start in range(0, len(chunks), size):  # every process takes part in every round
                    mine = chunks[start + processes.index] if start + processes.index < len(chunks) else []
                    records: list[dict] = []
                    decode(mine, records.extend)
                    gathered = processes.gather(records)
                    if processes.is_main:
                        write(fh, gathered)
    finally:
        if bar is not None:
            bar.close()
    return {"out": str(out_path), "written": written[0], "skipped": len(done), "failed": failed,
            "total": len(prompts) * len(specs), "rows": rows, "processes": processes.size,
            "seconds": time.perf_counter() - started}


DEFAULT_SETTINGS = {k: v for k, v in DecodeSettings().to_dict().items() if k != "seed"}


def _finished(out_path: Path, run: dict, resume: bool, overwrite: bool) -> set[tuple[str, str]]:
    """The (id, spec) already in `out_path` when resuming; checks the file belongs to this run."""
    done: set[tuple[str, str]] = set()
    if out_path.exists() and out_path.stat().st_size > 0:
        if resume:
            for rec in read_records(out_path, repair=True):
                old = rec.get("run")
                if old is not None and isinstance(old.get("settings"), dict):
                    # A setting added since the file was written took its default there.
                    old = {**old, "settings": {**DEFAULT_SETTINGS, **old["settings"]}}
                if old is not None and old != run:
                    diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
                    if "settings" in diff:
                        diff.remove("settings")
                        diff += sorted(k for k in run["settings"] if old["settings"].get(k) != run["settings"][k])
                    raise InputError(f"{out_path} was written with different settings ({', '.join(diff)}); "
                                     "use the same settings to resume, or write to a new file.")
                done.add((str(rec.get("id")), spec_key(rec)))
        elif not overwrite:
            raise InputError(f"{out_path} already exists; pass --resume to continue it or --overwrite to start over.")
        else:
            out_path.unlink()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return done


def decode_records(lm, todo: Sequence[tuple[int, dict, RunSpec]], prefs: dict, settings: DecodeSettings, run: dict,
                   *, rows: int, trace: bool, on_records: Callable[[list[dict]], None]) -> None:
    """Decode the (prompt index, prompt item, spec) of `todo` together, `rows` at a time; after each
    step `on_records` receives the records that finished (or ``{id, spec, error}`` for a refused one).

    A record is made ready (validated, tokenised) only when it is about to get a row, so memory
    stays bounded by `rows` whatever the length of `todo`.
    """
    engine = Engine(lm, rows)
    queued = iter(todo)
    owners: dict[int, tuple] = {}  # id(job) -> (index, item, spec)

    def top_up(out: list) -> None:
        """Keep one wave waiting behind the running rows."""
        while len(owners) < 2 * rows:
            index, item, spec = next(queued, (None, None, None))
            if spec is None:
                return
            try:
                job = spec.job(lm, item["prompt"], prefs, settings.replace(seed=record_seed(settings.seed, index)))
            except InputError as exc:
                out.append({"id": item["id"], "spec": spec.key, "error": str(exc)})
                continue
            owners[id(engine.submit(job))] = (index, item, spec)

    try:
        out: list[dict] = []
        top_up(out)
        while engine.busy or out:
            for job, step in engine.step() if engine.busy else []:
                if step is not None:
                    continue
                index, item, spec = owners.pop(id(job))
                if job.error is not None:
                    out.append({"id": item["id"], "spec": spec.key, "error": str(job.error)})
                else:
                    out.append(_record(index, item, spec, job.result, run, trace))
            top_up(out)
            if out:
                on_records(out)
                out = []
    finally:
        engine.close()


def _record(index: int, item: dict, spec: RunSpec, result, run: dict, trace: bool) -> dict:
    record = {"id": item["id"], "index": index, "prompt": item["prompt"], "spec": spec.key,
              "spec_label": spec.label, "method": spec.method, "text": result.text,
              "settings": result.settings, "stats": result.stats, "run": run}
    if trace:
        record["steps"] = [s.to_dict() for s in result.steps]
    return record
