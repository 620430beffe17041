"""AlignX's alignment accuracy: how well a model, used as an implicit judge, prefers the response
written for a persona.

For each pair, the implicit reward r(y) = log p(y | persona, prompt) − log p(y | prompt), summed
over the response tokens, with the prompts built by `prompting.prompt_ids` (exactly the prompts
Persona-judge uses) and the response appended as the assistant's tokens with nothing after them. A
pair is a win when r(chosen) > r(rejected), a loss when <, a tie when equal; accuracy =
(wins + ties/2) / n, so swapping chosen and rejected gives exactly 1 − accuracy. Sequences are
scored once each, in batches that do not depend on the chosen/rejected labels, so the swapped run
sees bit-identical log-probabilities.

Each pair needs four sequences (persona prompt and plain prompt, each with chosen and rejected).
By default (``share=True``) they go through the prefix-tree scorer: each prompt is fed once and
its KV cache serves both answers, and each persona's system turn once for every pair (see
`logprobs`); ``share=False`` scores the four sequences whole in flat batches, the benchmark's
baseline. `score_pairs` gives one row per pair and `summarize_pairs` the accuracy, so a caller
may score the pairs in pieces, on several processes (`sharding`), and summarise once.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from ...engine.prompting import prompt_ids
from ...errors import InputError
from ...paths import DATA
from ..runs.sharding import score_all
from ..scoring.logprobs import fits_context, sequence_logprobs
from ..stats import wilson


def load_pairs(path: str | os.PathLike, *, limit: int | None = None, seed: int | None = None) -> list[dict]:
    """AlignX-style pairs {prompt, chosen, rejected, ground_truth_persona}; a random sample with seed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Pairs file {str(path)!r} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        data = None
    if data is None:  # JSONL
        data = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {n}: invalid JSON ({exc.msg}).") from exc
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of preference pairs.")
    pairs = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(f"{path}: item {i} is not an object.")
        for key in ("prompt", "chosen", "rejected", "ground_truth_persona"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise InputError(f"{path}: item {i} lacks a non-empty {key!r}.")
        pairs.append({k: rec[k] for k in ("prompt", "chosen", "rejected", "ground_truth_persona")} | {"index": i})
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1.")
    if seed is not None:
        pairs = random.Random(seed).sample(pairs, min(limit or len(pairs), len(pairs)))
    elif limit is not None:
        pairs = pairs[:limit]
    return pairs


def pair_sequences(lm, pair: dict) -> list[tuple[list[int], list[int]]]:
    """The four (prompt, response) token sequences of a pair: persona and plain prompt, each with
    chosen then rejected. An `InputError` for an empty response or a sequence longer than the context."""
    tok = lm.tokenizer
    cond = prompt_ids(tok, pair["prompt"], [pair["ground_truth_persona"]])
    plain = prompt_ids(tok, pair["prompt"], [])
    chosen = tok(pair["chosen"], add_special_tokens=False)["input_ids"]
    rejected = tok(pair["rejected"], add_special_tokens=False)["input_ids"]
    if not chosen or not rejected:
        raise InputError(f"Pair {pair.get('index', '?')} has an empty chosen or rejected response.")
    longest = max(len(cond), len(plain)) + max(len(chosen), len(rejected))
    if not fits_context(lm, longest):
        raise InputError(f"Pair {pair.get('index', '?')} is {longest} tokens with its prompt, longer than the "
                         f"model's context of {lm.context_length}.")
    return [(cond, chosen), (plain, chosen), (cond, rejected), (plain, rejected)]


def score_pairs(lm, pairs: Sequence[dict], *, batch_size: int | None = None, share: bool = True,
                progress: Callable | None = None) -> list[dict]:
    """One row per pair: {index, persona, r_chosen, r_rejected, outcome} (see the module docstring).

    `batch_size`: tree nodes per forward with `share` (default 64), whole sequences without (default 8).
    """
    items = [item for pair in pairs for item in pair_sequences(lm, pair)]
    lps = sequence_logprobs(lm, items, batch_size=batch_size, share=share, progress=progress)
    rows = []
    for n, pair in enumerate(pairs):
        at = 4 * n
        r_chosen = lps[at] - lps[at + 1]
        r_rejected = lps[at + 2] - lps[at + 3]
        outcome = "win" if r_chosen > r_rejected else "loss" if r_chosen < r_rejected else "tie"
        rows.append({"index": pair.get("index"), "persona": pair["ground_truth_persona"],
                     "r_chosen": r_chosen, "r_rejected": r_rejected, "outcome": outcome})
    return rows


def summarize_pairs(rows: Sequence[dict], model: str) -> dict:
    """Accuracy with a 95% Wilson interval, overall and by persona, from `score_pairs` rows."""
    by_persona = defaultdict(list)
    for row in rows:
        by_persona[row["persona"]].append(row["outcome"])
    summary = _accuracy([row["outcome"] for row in rows])
    summary["by_persona"] = {persona: _accuracy(outcomes) for persona, outcomes in by_persona.items()}
    summary["model"] = model
    summary["per_pair"] = list(rows)
    summary["ties_count_half"] = True
    return summary


def alignment_accuracy(lm, pairs: list[dict], *, batch_size: int | None = None, share: bool = True,
                       progress: Callable | None = None, map_items: Callable = score_all) -> dict:
    """AlignX alignment accuracy of `lm` as an implicit judge (see the module docstring).

    Every pair is checked before any is scored. `map_items(pairs, score)` runs `score` (a list of
    pairs -> their rows) over the pairs: all at once here by default; `sharding.ShardedMap` splits
    them across processes, resumably.
    """
    if not pairs:
        raise InputError("There are no preference pairs to score.")
    for pair in pairs:
        pair_sequences(lm, pair)
    rows = map_items(pairs, lambda chunk: score_pairs(lm, chunk, batch_size=batch_size, share=share,
                                                      progress=progress))
    return summarize_pairs(rows, lm.name)


def _accuracy(outcomes: list[str]) -> dict:
    n = len(outcomes)
    wins, ties, losses = (outcomes.count(o) for o in ("win", "tie", "loss"))
    score = wins + ties / 2
    low, high = wilson(score, n)
    return {"accuracy": score / n if n else None, "n": n, "low": low, "high": high,
            "wins": wins, "ties": ties, "losses": losses}


# --------------------------------------------------------------------------- judge capacity (the app's panel)

SAMPLE_PAIRS = DATA / "psoups_student_phd_sample.json"
SHORT_PERSONA = {
    "Generate a response that can be easily understood by an elementary school student.": "elementary school",
    "Generate a response that only a PhD Student in that specific field could understand.": "PhD",
}


def default_pairs_file() -> Path:
    """``$PJUDGE_PAIRS`` if set, else the 60 P-Soups student/PhD users shipped in ``data/``."""
    return Path(os.environ.get("PJUDGE_PAIRS") or SAMPLE_PAIRS)


def judge_capacity(lm, n: int = 40, seed: int = 0, pairs_file: str | os.PathLike | None = None, *,
                   batch_size: int | None = None, progress: Callable | None = None) -> dict:
    """AlignX alignment accuracy of `lm` on n random student/PhD pairs (the app's "Judge capacity").

    Returns {"accuracy", "n", "low", "high", "wins", "ties", "losses", "by_persona", "file", ...};
    "by_persona" is keyed by a short persona name ("elementary school", "PhD"). Ties count ½.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("The number of pairs must be a whole number of at least 1.")
    path = Path(pairs_file) if pairs_file is not None else default_pairs_file()
    pairs = load_pairs(path, limit=n, seed=seed)
    result = alignment_accuracy(lm, pairs, batch_size=batch_size, progress=progress)
    result["by_persona"] = {SHORT_PERSONA.get(k, k): v for k, v in result["by_persona"].items()}
    result["file"] = str(path)
    result["seed"] = seed
    return result
