"""What `eval align-acc`, `eval fit` and `eval infer-acc` share to run on one process or several
(``torchrun`` / ``accelerate launch``, see `evaluation.sharding`): the --resume and --chunk flags,
loading the model in every process, and writing the result on the main process only.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from ..engine.loading import LoadedModel
from ..evaluation.runs.sharding import Processes, ShardedMap
from .args import load_from_args, progress_bar
from .output import write_json


def add_shard_arguments(parser: argparse.ArgumentParser, unit: str, chunk: int) -> None:
    parser.add_argument("--resume", action="store_true",
                        help=f"with --out: continue an interrupted run, skipping the {unit} it scored (kept in "
                             "OUT.partial.jsonl until the result is written)")
    parser.add_argument("--chunk", type=int, default=chunk,
                        help=f"{unit} a process scores between two saves of the rows (default {chunk})")


@dataclass
class Sharded:
    """The model loaded in this process, and the `map_items` hook that splits the items across processes."""

    processes: Processes
    map_items: ShardedMap
    lm: LoadedModel

    @property
    def is_main(self) -> bool:
        return self.processes.is_main

    def write(self, result: dict, out: str | None) -> bool:
        """Write `result` to `out` and drop the rows kept for resume; False (nothing to print) off the main process."""
        if not self.is_main:
            return False
        write_json(result, out)
        self.map_items.finish()
        return True


def start(args: argparse.Namespace, items: Sequence, kind: str, unit: str, **settings) -> Sharded:
    """Join the launched processes, check the rows kept by an interrupted run, then load the model.

    `settings` are what changes the rows besides the items and the model (a resumed run must match).
    """
    processes = Processes(args.device)
    args.device = processes.device  # with several GPUs: this process's own
    run = {"kind": kind, "model": args.model, "quantize": args.quantize, "dtype": args.dtype, **settings}
    mapper = ShardedMap(processes, run=run, out=args.out, resume=args.resume, chunk=args.chunk,
                        progress=None if args.quiet else progress_bar(unit)).prepare(items)
    with processes.main_first():  # the main process alone fills the bundled model's cache
        lm = load_from_args(args)
    return Sharded(processes, mapper, lm)
