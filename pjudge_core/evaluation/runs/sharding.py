"""Evaluations split across processes, and resumable: what `eval align-acc`, `eval fit` and
`eval infer-acc` run on.

Started as one process (plain ``python -m pjudge_core ...``), nothing distributed is set up.
Started by a launcher, ``torchrun --nproc_per_node N`` (CPU) or ``accelerate launch --multi_gpu
--num_processes N`` (GPUs), `Processes` wraps accelerate's `PartialState`: each of the N
processes loads the model (the main one first, so that it alone fills the bundled model's cache),
on CUDA on its own GPU (``PartialState().device``), on CPU with cores // N threads.

`ShardedMap` is the ``map_items(items, score)`` hook of `alignment_accuracy`,
`score_fit_records` and `inference_accuracy` (`score_all`, their default, scores everything at
once in this process). It cuts the items, in their order, into chunks of `chunk` consecutive
items; chunk j is scored by process j mod N, N chunks at a time (a round); after each round every
process receives every row (accelerate's `gather_object`), and the rows come back in the items'
order, so every process can summarise and the main one alone prints and writes. A chunk holds
the same items whatever N is, so each item is scored in the same batch as in one process: the
numbers agree up to float32 rounding (different thread counts may round differently).

Resume: given an output file, the main process appends each round's rows to
``<out>.partial.jsonl`` (a header naming the run and its items, then one ``{"item", "row"}``
line per item, flushed and fsync'ed), and `finish` removes it once the result is written. With
``resume=True`` the items already there are skipped; a truncated last line (the round being
written when the run died) is dropped; a file written for other items, another model or other
settings is refused. Without ``resume`` an existing file is refused rather than overwritten:
the work it holds would be lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ...engine.loading import resolve_device
from ...errors import InputError

PARTIAL_SUFFIX = ".partial.jsonl"


def score_all(items: Sequence, score: Callable[[list], list]) -> list:
    """Score every item at once in this process: the default `map_items`."""
    return score(list(items))


def launched() -> bool:
    """True when a launcher started several processes (torchrun and accelerate launch set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def close() -> None:
    """Leave the process group, if this process joined one (a process that exits without it may abort)."""
    if launched() and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Processes:
    """This process's place among the launched ones; one process, and no accelerate, when not launched.

    `device` is where this process loads the model: ``device`` as given, or with several processes
    on CUDA, this process's own GPU.
    """

    def __init__(self, device: str = "auto"):
        self.state = None
        self.device = device
        if not launched():
            return
        cpu = resolve_device(device) == "cpu"
        if not cpu and device not in ("auto", "cuda"):
            raise InputError(f"With several processes each uses its own GPU; pass --device auto or cuda, not {device}.")
        from accelerate import PartialState  # only launched runs pay for it

        self.state = PartialState(cpu=cpu)
        if cpu:
            # torchrun sets OMP_NUM_THREADS=1 in every process; share the cores instead.
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.state.num_processes))
            torch.set_num_threads(max(1, _cores() // local))
        else:
            self.device = str(self.state.device)

    @property
    def size(self) -> int:
        return self.state.num_processes if self.state else 1

    @property
    def index(self) -> int:
        return self.state.process_index if self.state else 0

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def main_first(self):
        """A context in which the main process runs first and the others wait for it."""
        return self.state.main_process_first() if self.state else contextlib.nullcontext()

    def gather(self, values: list) -> list:
        """Every process's `values`, concatenated in process order, on every process."""
        if not self.state:
            return values
        from accelerate.utils import gather_object

        return gather_object(values)

    def broadcast(self, value):
        """The main process's `value`, on every process."""
        if not self.state:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]


def partial_path(out: str | os.PathLike) -> Path:
    """Where the per-item rows of a run writing `out` are kept until it finishes."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def items_digest(items: Sequence) -> str:
    """A fingerprint of the items (their JSON), so a resumed run scores the same items."""
    text = json.dumps(list(items), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ShardedMap:
    """``map_items(items, score)`` over the launched processes, saving rows for resume (module docstring).

    `run` names what produces the rows (command, model, settings that change them); `progress(done,
    total)` counts items on the main process. Call `prepare(items)` before the slow model load so
    that a bad resume fails at once, and `finish()` after the result is written.
    """

    def __init__(self, processes: Processes, *, run: dict, out: str | os.PathLike | None = None,
                 resume: bool = False, chunk: int = 64, progress: Callable | None = None):
        if resume and not out:
            raise InputError("--resume needs --out: the rows of an interrupted run are kept next to the output file.")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise InputError("--chunk must be a whole number of at least 1.")
        self.processes, self.run, self.resume, self.chunk = processes, run, resume, chunk
        self.path = partial_path(out) if out else None
        self.progress = progress if processes.is_main else None
        self.header: dict | None = None
        self.done: dict[int, dict] = {}

    def prepare(self, items: Sequence) -> ShardedMap:
        """Read what an interrupted run left (main process), check it belongs to this run, share it."""
        self.header = {"run": self.run, "items": len(items), "sha256": items_digest(items)}
        found = None
        if self.processes.is_main and self.path is not None:
            try:
                found = {"done": self._read()}
            except InputError as exc:
                found = {"error": str(exc)}
        found = self.processes.broadcast(found)
        if found and "error" in found:
            raise InputError(found["error"])
        self.done = {int(i): row for i, row in (found or {}).get("done", {}).items()}
        return self

    def _read(self) -> dict[int, dict]:
        if not self.path.exists():
            return {}
        if not self.resume:
            raise InputError(f"{self.path} holds the rows of an interrupted run; pass --resume to continue it, or "
                             "delete it to start over.")
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines[-1]:  # the line being written when the run died: drop it
            with open(self.path, "r+b") as fh:
                fh.truncate(len(data) - len(lines[-1]))
        entries = []
        for n, line in enumerate(lines[:-1], 1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{self.path}: line {n} is not JSON ({exc.msg}); delete the file to start over.") \
                    from exc
        if not entries:
            return {}
        if entries[0].get("header") != self.header:
            old = entries[0].get("header") or {}
            old_run = old.get("run") or {}
            diff = sorted(k for k in set(old_run) | set(self.run) if old_run.get(k) != self.run.get(k))
            if (old.get("items"), old.get("sha256")) != (self.header["items"], self.header["sha256"]):
                diff.append("items")
            raise InputError(f"{self.path} was written by a run with other {', '.join(diff) or 'settings'}; rerun "
                             "that command to resume it, or delete the file to start over.")
        return {entry["item"]: entry["row"] for entry in entries[1:]}

    def __call__(self, items: Sequence, score: Callable[[list], list]) -> list:
        if self.header is None:
            self.prepare(items)
        items = list(items)
        rows = dict(self.done)
        todo = [i for i in range(len(items)) if i not in rows]
        chunks = [todo[k:k + self.chunk] for k in range(0, len(todo), self.chunk)]
        size, index = self.processes.size, self.processes.index
        with self._writer() as write:
            if self.progress and items:
                self.progress(len(rows), len(items))
            for start in range(0, len(chunks), size):
                mine = chunks[start + index] if start + index < len(chunks) else []
                scored = list(zip(mine, score([items[i] for i in mine]))) if mine else []
                new = self.processes.gather(scored)  # every process takes part in every round
                rows.update(new)
                write(new)
                if self.progress:
                    self.progress(len(rows), len(items))
        return [rows[i] for i in range(len(items))]

    @contextlib.contextmanager
    def _writer(self):
        """write(rows) appends (item, row) pairs to the partial file: main process, with an output file only."""
        if not self.processes.is_main or self.path is None:
            yield lambda rows: None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8") as fh:
            def append(lines: list[str]) -> None:
                if lines:
                    fh.write("".join(line + "\n" for line in lines))
                    fh.flush()
                    os.fsync(fh.fileno())

            if fresh:
                append([json.dumps({"header": self.header}, ensure_ascii=False)])
            yield lambda rows: append([json.dumps({"item": i, "row": row}, ensure_ascii=False) for i, row in rows])

    def finish(self) -> None:
        """Remove the partial file (main process), once the result it fed is written."""
        if self.processes.is_main and self.path is not None:
            self.path.unlink(missing_ok=True)
