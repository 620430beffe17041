"""The "Judge capacity" panel: how well a model, used as an implicit judge, tells apart the
response a persona prefers (AlignX alignment accuracy on the P-Soups student/PhD pairs).

`judge_capacity(lm, n=40)` scores a random sample of n pairs (seeded, so the same call gives the
same sample) with `evaluation.alignment_accuracy`. The pairs are read from, in order:
`pairs_file`; ``$PJUDGE_PAIRS``; ``<repo>/../shared/data/psoups_student_phd.json`` (the full 600
pairs next to the repository); ``<repo>/data/psoups_student_phd.json``; and the 60-pair sample
shipped in the repository, ``<repo>/data/psoups_student_phd_sample.json`` (so the app works on Spaces).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .errors import InputError

REPO = Path(__file__).resolve().parent.parent
FULL_NAME = "psoups_student_phd.json"
SAMPLE_NAME = "psoups_student_phd_sample.json"
SHORT_PERSONA = {
    "Generate a response that can be easily understood by an elementary school student.": "elementary school",
    "Generate a response that only a PhD Student in that specific field could understand.": "PhD",
}


def candidate_files() -> list[Path]:
    env = os.environ.get("PJUDGE_PAIRS")
    found = [Path(env)] if env else []
    return found + [REPO.parent / "shared" / "data" / FULL_NAME, REPO / "data" / FULL_NAME, REPO / "data" / SAMPLE_NAME]


def find_pairs_file(pairs_file: str | os.PathLike | None = None) -> Path:
    if pairs_file is not None:
        path = Path(pairs_file)
        if not path.is_file():
            raise InputError(f"Pairs file {str(path)!r} does not exist.")
        return path
    for path in candidate_files():
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidate_files())
    raise InputError(f"The student/PhD preference pairs were not found (looked in {tried}); "
                     "pass the file's path or set PJUDGE_PAIRS.")


def judge_capacity(lm, n: int = 40, seed: int = 0, pairs_file: str | os.PathLike | None = None, *,
                   batch_size: int = 8, progress: Callable | None = None) -> dict:
    """AlignX alignment accuracy of `lm` on n random student/PhD pairs.

    Returns {"accuracy", "n", "low", "high", "wins", "ties", "losses", "by_persona", "file", ...};
    "by_persona" is keyed by a short persona name ("elementary school", "PhD"). Ties count ½.
    """
    from .evaluation import alignment_accuracy, load_pairs

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError("The number of pairs must be a whole number of at least 1.")
    path = find_pairs_file(pairs_file)
    pairs = load_pairs(path, limit=n, seed=seed)
    result = alignment_accuracy(lm, pairs, batch_size=batch_size, progress=progress)
    result["by_persona"] = {SHORT_PERSONA.get(k, k): v for k, v in result["by_persona"].items()}
    result["file"] = str(path)
    result["seed"] = seed
    return result
