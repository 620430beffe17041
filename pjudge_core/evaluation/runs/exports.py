"""A batch run as another tool's input: for now AlpacaEval's model outputs (`export`).

AlpacaEval (github.com/tatsu-lab/alpaca_eval) reads a JSON list of ``{instruction, output,
generator}`` (``dataset`` and other keys are optional and passed through) and names the model by
the file's one ``generator`` (a file of several is "Current model"). It pairs each output with the
reference output of the same ``instruction`` text (an inner join; a repeated instruction is paired
several times). So `alpaca_eval_outputs` makes one generator per (model, run spec), named
``model:spec`` (``SmolLM2-135M-Instruct:persona-judge``), whose instructions each appear once:

- the instruction is the record's prompt, the output its text stripped of surrounding whitespace
  (as AlpacaEval strips the outputs it generates itself); an empty answer is kept (it loses),
  never dropped, since dropping it would raise the win rate;
- a file pooling several batch runs (``cat``) may hold a prompt and spec once per run seed (the
  batch's ``--seed``): `seed` picks one, by default the lowest, and the generator names then end
  in ``:seed=N`` so that the exports of different seeds stay apart;
- any other repetition (runs of other preferences or settings pooled, or two prompt ids with the
  same text) is an `InputError`, as are failed records and records without a prompt or text.

`output_files` decides where each generator goes: one file per generator in a folder (what
``alpaca_eval --model_outputs`` wants), or a single ``.json`` file when there is one generator.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ...engine.specs import RunSpec, split_top_level
from ...errors import InputError
from .records import spec_key, specs_in

FORMATS = ("alpaca_eval",)


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise InputError(f"Unknown export format {name!r}; the formats are: {', '.join(FORMATS)}.")
    return name


def run_seed(record: dict):
    """The seed the batch run was started with (``--seed``; None when the record does not say)."""
    return ((record.get("run") or {}).get("settings") or {}).get("seed")


def short_model_name(name: str) -> str:
    """``Qwen/Qwen2.5-1.5B-Instruct`` -> ``Qwen2.5-1.5B-Instruct``; the bundled model's label
    ``SmolLM2-135M-Instruct (bundled, offline)`` -> ``SmolLM2-135M-Instruct``."""
    return re.sub(r"\s*\([^()]*\)$", "", str(name).strip()).rstrip("/").rsplit("/", 1)[-1]


def _check_records(records: Sequence[dict], source: str) -> None:
    if not records:
        raise InputError(f"{source} holds no records; run `python -m pjudge_core batch` first.")
    for n, rec in enumerate(records, 1):
        spec = rec.get("spec") or rec.get("method")
        if rec.get("error") is not None:
            raise InputError(f"{source}: record {n} ({spec}, prompt {rec.get('id')!r}) failed "
                             f"({rec['error']}) and holds no answer; leave its spec out with --spec.")
        if "id" not in rec or not spec:
            raise InputError(f"{source}: record {n} lacks its id or spec; is this a batch output file?")
        if not isinstance(rec.get("text"), str):
            raise InputError(f"{source}: record {n} ({spec}, prompt {rec['id']!r}) has no text; "
                             "is this a batch output file?")
        if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
            raise InputError(f"{source}: record {n} ({spec}, prompt {rec['id']!r}) has no prompt, "
                             "which AlpacaEval needs as the instruction.")


def choose_specs(records: Sequence[dict], specs: str | Sequence[str] | None, source: str) -> list[str]:
    """The spec keys to export, in the order asked (default: every spec, in the file's order).
    A spec may be written as any run spec that means it (``fusion(alpha=0.50)``)."""
    present = specs_in(records)
    if not specs:
        return present
    chosen = []
    for text in split_top_level(specs) if isinstance(specs, str) else list(specs):
        key = text if text in present else RunSpec.parse(text).key
        if key not in present:
            raise InputError(f"Run spec {text!r} has no records in {source}; it holds: {', '.join(present)}.")
        if key not in chosen:
            chosen.append(key)
    return chosen


def _seed_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def alpaca_eval_outputs(records: Sequence[dict], *, specs: str | Sequence[str] | None = None, seed: int | None = None,
                        model_name: str | None = None, source: str = "the run") -> dict:
    """AlpacaEval model outputs of a batch run's records (see the module docstring).

    Returns ``{"generators": [{"name", "model", "spec", "entries", "empty"}], "seed", "seeds"}``:
    one generator per (model, spec), specs in the order asked; ``entries`` the AlpacaEval list in
    the prompts' order; ``empty`` how many outputs are empty; ``seed`` the run seed exported and
    ``seeds`` every run seed of the chosen specs' records. `model_name` replaces the model part of
    the names (needed when the records do not name their model).
    """
    records = list(records)
    _check_records(records, source)
    keys = choose_specs(records, specs, source)
    picked = [(n, rec) for n, rec in enumerate(records) if spec_key(rec) in keys]
    seeds = sorted({run_seed(rec) for _, rec in picked}, key=lambda s: (s is None, s if s is not None else 0))
    if seed is not None:
        if seed not in seeds:
            raise InputError(f"{source} holds no records of run seed {seed}; its run seeds: {_seed_text(seeds)}.")
        chosen_seed = seed
    else:
        chosen_seed = seeds[0]
    picked = [(n, rec) for n, rec in picked if run_seed(rec) == chosen_seed]
    suffix = f":seed={chosen_seed}" if len(seeds) > 1 else ""

    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for n, rec in picked:
        model = model_name or short_model_name((rec.get("run") or {}).get("model") or "")
        if not model:
            raise InputError(f"{source}: record {n + 1} does not name its model; pass --model-name for the "
                             "generator names.")
        groups.setdefault((spec_key(rec), model), []).append((n, rec))

    generators = []
    for (spec, model), members in sorted(groups.items(), key=lambda item: keys.index(item[0][0])):
        name = f"{model}:{spec}{suffix}"
        by_id: dict[str, int] = {}
        by_text: dict[str, str] = {}
        for _, rec in members:
            pid = str(rec["id"])
            by_id[pid] = by_id.get(pid, 0) + 1
            if by_id[pid] > 1:
                raise InputError(f"{source} holds prompt {pid!r} more than once for {name} (runs with other "
                                 "preferences or settings pooled in one file?); export each run from a file of "
                                 "its own.")
            other = by_text.setdefault(rec["prompt"], pid)
            if other != pid:
                raise InputError(f"Prompts {other!r} and {pid!r} of {source} have the same text; AlpacaEval pairs "
                                 "answers with instructions by their text, so each may appear once per generator.")
        members.sort(key=lambda m: (m[1]["index"] if isinstance(m[1].get("index"), int) else float("inf"), m[0]))
        entries = [{"instruction": rec["prompt"], "output": rec["text"].strip(), "generator": name}
                   for _, rec in members]
        generators.append({"name": name, "model": model, "spec": spec, "entries": entries,
                           "empty": sum(1 for e in entries if not e["output"])})
    return {"generators": generators, "seed": chosen_seed, "seeds": seeds}


def _slug(text: str) -> str:
    """A file name's stem, as `RunSpec.slug` (``direct[A]`` -> ``direct-a``, ``direct[]`` -> ``direct-none``)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.replace("[]", "-none").lower()).strip("-.") or "outputs"


def output_files(generators: Sequence[dict], out: str | Path) -> list[tuple[Path, dict]]:
    """(file, generator) for each generator: `out` is a folder, one ``<spec>.json`` per generator
    (``<model>-<spec>.json`` when the generators come from several models), or a ``.json`` file
    when there is one generator."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        if len(generators) != 1:
            raise InputError(f"{len(generators)} generators cannot share {out}: AlpacaEval reads one generator per "
                             "file; pass a folder as --out, or one spec with --spec.")
        return [(out, generators[0])]
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; pass a folder, or a .json file for one generator.")
    several_models = len({g["model"] for g in generators}) > 1
    files, used = [], set()
    for g in generators:
        stem = _slug(f"{g['model']}-{g['spec']}" if several_models else g["spec"])
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name)
        files.append((out / f"{name}.json", g))
    return files
