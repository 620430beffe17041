"""`python -m pjudge_core`: a thin command line over the library.

One module per command (`generate`, `bench`, `batch`, `evaluate` for ``eval ...``, `personas` for
``infer`` and ``eval fit`` / ``eval infer-acc``, `meters` for ``eval meters``, `table2`, `ablation`, `export`,
`serve`), each with ``add_parser(subparsers)`` and handlers ``(args) -> exit code``; `args` holds the
arguments they share. User errors (`PJudgeError`) become one line on stderr and exit status 2, never a
traceback; only `main` does I/O of that kind.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import PJudgeError
from ..evaluation.runs import sharding
from . import ablation, batch, bench, evaluate, export, generate, personas, serve, table2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pjudge_core",
                                     description="Persona-judge: one model, several preferences, decoding-time alignment.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (generate, bench, batch, evaluate, personas, table2, ablation, export, serve):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PJudgeError as exc:
        rank = int(os.environ.get("RANK", "0"))  # set by torchrun / accelerate launch: say which process
        print(f"error{f' (process {rank})' if rank else ''}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sharding.close()
