"""The lab's insight section without the browser: did each persona get what it asked for, which
method served them all, and which persona does a user's example pairs reveal?

  * `panel_fit(lm, query, preferences, result)`: persona fit of a finished panel's answer under
    every persona of the run (`evaluation.fit`), or the reason it has none; `FitScoring.fit` the
    same for visitors whose answers finish together, scored in one call.
  * `pairs_from_rows` / `pairs_from_json`: a visitor's example pairs (table rows, pasted or
    uploaded JSON), checked, with one readable sentence for anything malformed.
  * `sample_users()` / `user_choices()`: the bundled P-Soups users for the picker.
  * `candidates(kind)`: the candidate personas inference ranks.

Every score here is the same model's opinion (`fit.NOTE`), which the page says next to them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..engine.trace import Result
from ..errors import InputError
from ..evaluation.self_judge.alignment import SAMPLE_PAIRS
from ..evaluation.self_judge.fit import Fit, answer_fits
from ..evaluation.self_judge.inference import FEEDBACK, PAIR_FIELDS, check_pairs, load_candidates, load_users
from ..paths import DATA

PSOUPS_CANDIDATES = DATA / "psoups_candidates.json"
CANDIDATE_KINDS = {"psoups": "the 6 P-Soups personas", "presets": "every persona preset"}
MAX_PAIRS = 100  # more example pairs than anyone types; keeps one click's scoring bounded


def answer_ids(lm, result: Result) -> list[int]:
    """The tokens an answer consists of: what the model emitted, without a final end-of-sequence."""
    ids = list(result.token_ids)
    while ids and ids[-1] in lm.eos_token_ids:
        ids.pop()
    return ids


EMPTY = "empty answer: nothing to score"
TOO_LONG = "longer than the model's context: not scored"


def panel_fit(lm, query: str, preferences: Mapping[str, str], result: Result) -> tuple[Fit | None, str]:
    """(fit of the answer under every persona, "") or (None, why it has no fit)."""
    return FitScoring().fit(lm, query, preferences, result)


@dataclass(eq=False)
class _Asked:
    lm: object
    query: str
    preferences: dict[str, str]
    ids: list[int]
    done: bool = False
    fit: Fit | None = None
    error: BaseException | None = None


class FitScoring:
    """`panel_fit` for many visitors: the answers whose fits are asked for while a scoring runs
    are scored together, one `answer_fits` call per model and persona set.

    Why: on a machine the visitors share, every visitor adds the same fits again (a fifth of the
    default run's arithmetic on a CPU); together, a prompt the answers share (the same query and
    personas: every visitor of the default run) is fed once and the forwards are wider (four fits
    of the default run together take a fifth less time than one by one: docs/benchmarks.md).
    How (a group commit): a caller that finds no scoring under way scores every pending answer,
    its own included; callers that arrive meanwhile wait, and the first of them scores all that
    are pending then. A caller alone never waits.
    """

    def __init__(self):
        self._pending: list[_Asked] = []
        self._lock = threading.Lock()  # guards _pending
        self._scoring = threading.Lock()  # one scoring at a time

    def fit(self, lm, query: str, preferences: Mapping[str, str], result: Result) -> tuple[Fit | None, str]:
        """What `panel_fit` returns (its errors raised in this caller too)."""
        ids = answer_ids(lm, result)
        if not ids:
            return None, EMPTY
        asked = _Asked(lm, query, dict(preferences), ids)
        with self._lock:
            self._pending.append(asked)
        with self._scoring:
            if not asked.done:
                with self._lock:
                    batch, self._pending = self._pending, []
                self._score(batch)
        if asked.error is not None:
            raise asked.error
        return (asked.fit, "") if asked.fit is not None else (None, TOO_LONG)

    @classmethod
    def _score(cls, batch: list[_Asked]) -> None:
        groups: dict[tuple, list[_Asked]] = {}
        for asked in batch:
            groups.setdefault((id(asked.lm), tuple(asked.preferences.items())), []).append(asked)
        for group in groups.values():
            first = group[0]
            try:
                fits = answer_fits(first.lm, [(a.query, a.ids) for a in group], first.preferences, skip_long=True)
            except Exception as exc:
                if len(group) > 1:  # one answer's failure is its own: score them one by one
                    for asked in group:
                        cls._score([asked])
                    continue
                first.error, fits = exc, [None]
            for asked, fit in zip(group, fits):
                asked.fit, asked.done = fit, True


# --------------------------------------------------------------------------- a user's example pairs

def pairs_from_rows(rows) -> list[dict]:
    """Table rows [prompt, chosen, rejected] as pairs; blank rows are ignored."""
    if rows is None:
        rows = []
    if isinstance(rows, Mapping) and "data" in rows:  # a Dataframe value sent through the API
        rows = rows["data"]
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise InputError("The example pairs must be a table with the columns prompt, chosen and rejected.")
    pairs = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, Sequence) or isinstance(row, str):
            raise InputError(f"Row {n} of the example pairs is not a row of three cells.")
        cells = ["" if c is None else str(c) for c in row]
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < 3:
            raise InputError(f"Row {n} of the example pairs has {len(cells)} cells; it needs prompt, chosen and "
                             "rejected.")
        empty = next((field for field, cell in zip(PAIR_FIELDS, cells) if not cell.strip()), None)
        if empty:
            raise InputError(f"Row {n} of the example pairs has an empty {empty!r} cell.")
        pairs.append(dict(zip(PAIR_FIELDS, cells[:3])))
    if not pairs:
        raise InputError("There are no example pairs yet: pick a P-Soups user, upload or paste JSON, or fill in "
                         "the table (prompt, chosen, rejected).")
    return _checked(pairs, "The example pairs")


def pairs_from_json(text: str) -> tuple[list[dict], str | None]:
    """(pairs, ground truth or None) of pasted or uploaded JSON: a list of {prompt, chosen, rejected},
    or one AlignX-style user record (pairs under "Pair-wise Comparative Feedback")."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("The JSON is empty; paste a list of {prompt, chosen, rejected} pairs.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"That is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    truth = None
    if isinstance(data, Mapping) and FEEDBACK in data:
        truth, data = data.get("ground_truth_persona"), data[FEEDBACK]
    elif isinstance(data, list) and data and all(isinstance(d, Mapping) and FEEDBACK in d for d in data):
        raise InputError(f"That JSON holds {len(data)} users; paste one user's pairs (or one user record).")
    pairs = _checked(data, "The JSON")
    if truth is None and isinstance(data, list):
        truths = {d.get("ground_truth_persona") for d in data}
        truth = truths.pop() if len(truths) == 1 else None
    return pairs, truth if isinstance(truth, str) and truth.strip() else None


def pairs_from_file(path: str | None) -> tuple[list[dict], str | None]:
    """`pairs_from_json` of an uploaded file."""
    if not path:
        raise InputError("No file was uploaded.")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("The uploaded file is not UTF-8 text; upload a .json file.") from None
    return pairs_from_json(text)


def _checked(pairs, where: str) -> list[dict]:
    if isinstance(pairs, list) and len(pairs) > MAX_PAIRS:
        raise InputError(f"{where} has {len(pairs)} pairs; {MAX_PAIRS} at most are scored at a time.")
    return check_pairs(pairs, where)


def pairs_rows(pairs: Sequence[Mapping]) -> list[list[str]]:
    """Pairs as table rows."""
    return [[p[k] for k in PAIR_FIELDS] for p in pairs]


# --------------------------------------------------------------------------- bundled users and candidates

@lru_cache(maxsize=1)
def sample_users() -> tuple[dict, ...]:
    """The bundled P-Soups users: {index, pairs, truth, profile}."""
    return tuple(load_users(SAMPLE_PAIRS))


def user_choices() -> list[tuple[str, int]]:
    """(label, index) of each bundled user; the label shows the profile's start, never the truth."""
    def short(profile: str | None) -> str:
        text = profile or "no profile"
        return text if len(text) <= 60 else text[:59].rsplit(",", 1)[0] + " …"

    return [(f"user {u['index']}: {short(u['profile'])}", u["index"]) for u in sample_users()]


def sample_user(index) -> dict:
    users = {u["index"]: u for u in sample_users()}
    try:
        return users[int(index)]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"There is no bundled P-Soups user {index!r}; pick one from the list.") from None


def candidates(kind: str) -> list[str] | None:
    """Candidate preference texts for inference (None: every persona preset)."""
    if kind == "presets":
        return None
    if kind == "psoups":
        return load_candidates(PSOUPS_CANDIDATES)
    raise InputError(f"Unknown candidate set {kind!r}; choose {' or '.join(CANDIDATE_KINDS)}.")
