"""Persona inference from a user's example pairs ("active" inference, as in FamousPersona / AlignX).

Given one user's preference pairs (prompt x, chosen y+, rejected y−) and candidate preference
texts c, each candidate scores

    score(c) = Σ over pairs [log p(y+ | x, c) − log p(y− | x, c)]

with whole-response log-probabilities from the model's raw log-softmax in float32, the prompt
built by `prompting.prompt_ids` (the prompt Persona-judge gives that persona). The implicit
reward's no-preference terms log p(y± | x) are the same for every candidate and cancel in the
ranking, so they are never computed. The best-scoring candidate is the persona the pairs reveal,
in the eyes of this model.

Speed: only the tokens after the start that chosen and rejected share are scored (the shared
tokens' log-probabilities cancel too), and every sequence goes through `prefix_tree_logprobs`,
which feeds each run of tokens that several sequences share once: each candidate's system turn
once for all pairs, each (candidate, prompt) once for both answers and for repeated prompts.
A pair whose prompt plus response does not fit the model's context is skipped for
every candidate and counted in `Inference.skipped`.

A pairs file (`load_users`) is a JSON list of either
  * preference pairs ``{prompt, chosen, rejected}``: one user (its truth is the pairs'
    ``ground_truth_persona`` when they all name the same one), or
  * AlignX-style user records: the pairs in "Pair-wise Comparative Feedback", the truth in
    ``ground_truth_persona`` (the shared P-Soups student/PhD file and ``data/`` sample).
`inference_accuracy` is top-1 accuracy against the truth over users, with a Wilson interval.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...engine.api import generate
from ...engine.prompting import prompt_ids
from ...engine.settings import DecodeSettings
from ...errors import InputError
from ...presets import presets
from ..runs.sharding import score_all
from ..scoring.logprobs import fits_context
from ..scoring.prefix_tree import common_prefix_length, prefix_tree_logprobs
from ..stats import wilson

FEEDBACK = "Pair-wise Comparative Feedback"
TRUTH = "ground_truth_persona"
PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Inference:
    """Candidates ranked by how well they explain one user's pairs (see the module docstring)."""

    ranking: list[tuple[str, float]]  # (candidate text, score in nats), best first; ties keep the given order
    names: dict[str, str]  # {candidate text: short name} where one is known (a preset's name)
    per_pair: dict[str, list[float | None]]  # {candidate text: its term for each pair; None = skipped}
    pairs: int  # pairs scored
    skipped: list[int]  # indices of pairs skipped as longer than the context
    model: str
    written: str | None = None  # the candidate the model wrote (write=True), if any

    @property
    def best(self) -> str:
        return self.ranking[0][0]

    def name(self, text: str) -> str:
        return self.names.get(text) or text

    def to_dict(self) -> dict:
        return {"best": self.best, "best_name": self.name(self.best),
                "ranking": [{"text": t, "name": self.name(t), "score": s} for t, s in self.ranking],
                "per_pair": self.per_pair, "pairs": self.pairs, "skipped": self.skipped, "model": self.model,
                "written": self.written}


# --------------------------------------------------------------------------- candidates and pairs

def preset_names() -> dict[str, str]:
    """{preference text: preset name} of the persona presets."""
    return {p.text: name for name, p in presets().personas.items()}


def candidate_texts(candidates: Sequence[str] | Mapping[str, str] | None = None) -> dict[str, str]:
    """{text: name} of the candidates, in order, duplicates dropped: a list of texts, {name: text},
    or None for every persona preset. Names default to a preset's name when the text is one."""
    known = preset_names()
    if candidates is None:
        return dict(known)
    if isinstance(candidates, str):
        raise InputError("Candidates must be a list of preference texts, not one string.")
    if isinstance(candidates, Mapping):
        items = [(text, name) for name, text in candidates.items()]
    elif isinstance(candidates, Sequence):
        items = [(text, known.get(text, "") if isinstance(text, str) else "") for text in candidates]
    else:
        raise InputError("Candidates must be a list of preference texts or a {name: text} mapping.")
    out: dict[str, str] = {}
    for n, (text, name) in enumerate(items):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"Candidate {n} is empty or not text; every candidate must be a preference text.")
        out.setdefault(text, str(name))
    if not out:
        raise InputError("There are no candidate preference texts to rank; give at least one.")
    return out


def _read_json(path: Path, kind: str):
    """The JSON in a file, or an `InputError` naming the `kind` of file and what is wrong with it."""
    if not path.is_file():
        raise InputError(f"{kind} file {str(path)!r} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{kind} file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}).") from exc


def load_candidates(path: str | os.PathLike) -> list[str]:
    """The candidate preference texts of a JSON file holding a list of texts."""
    path = Path(path)
    data = _read_json(path, "Candidates")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of candidate preference texts.")
    if not data:
        raise InputError(f"{path} holds no candidates; list at least one preference text.")
    for i, text in enumerate(data):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: item {i} is not a non-empty preference text.")
    return data


def check_pairs(pairs, where: str = "") -> list[dict]:
    """The pairs as [{prompt, chosen, rejected}], or an `InputError` naming the first bad one."""
    prefix = f"{where}: " if where else ""
    if not isinstance(pairs, list) or not pairs:
        raise InputError(f"{prefix}expected a non-empty list of preference pairs {{prompt, chosen, rejected}}.")
    out = []
    for j, pair in enumerate(pairs):
        if not isinstance(pair, Mapping):
            raise InputError(f"{prefix}pair {j} is not an object with prompt, chosen and rejected.")
        for key in PAIR_FIELDS:
            if not isinstance(pair.get(key), str) or not pair[key].strip():
                raise InputError(f"{prefix}pair {j} lacks a non-empty {key!r}.")
        out.append({k: pair[k] for k in PAIR_FIELDS})
    return out


def load_users(path: str | os.PathLike) -> list[dict]:
    """Users of a pairs file: [{"index", "pairs", "truth" (None when unknown)}], user records also with
    their "profile" (None when absent) (module docstring)."""
    path = Path(path)
    data = _read_json(path, "Pairs")
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of preference pairs or of user records.")
    records = isinstance(data[0], dict) and FEEDBACK in data[0]
    users = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"{path}: item {i} is not an object.")
        if (FEEDBACK in item) != records:
            first = "a user record" if records else "a preference pair"
            raise InputError(f"{path}: item {i} {'lacks' if records else 'has'} {FEEDBACK!r}, but item 0 is {first}; "
                             "a file holds either pairs of one user or user records.")
        if records:
            truth = item.get(TRUTH)
            if truth is not None and (not isinstance(truth, str) or not truth.strip()):
                raise InputError(f"{path}: item {i}: {TRUTH!r} must be a non-empty text.")
            users.append({"index": i, "pairs": check_pairs(item[FEEDBACK], f"{path}: item {i}"), "truth": truth,
                          "profile": item.get("profile")})
    if records:
        return users
    pairs = check_pairs(data, str(path))
    truths = {item.get(TRUTH) for item in data}
    truth = truths.pop() if len(truths) == 1 else None
    return [{"index": 0, "pairs": pairs, "truth": truth if isinstance(truth, str) and truth.strip() else None}]


def sample_users(users: list[dict], limit: int | None = None, seed: int | None = None) -> list[dict]:
    """The first `limit` users, or a random sample of `limit` when `seed` is given."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError("--limit must be a whole number of at least 1.")
    if seed is not None:
        return random.Random(seed).sample(users, min(limit or len(users), len(users)))
    return users[:limit] if limit is not None else list(users)


# --------------------------------------------------------------------------- scoring

def infer_persona(lm, pairs: Sequence[Mapping], candidates: Sequence[str] | Mapping[str, str] | None = None, *,
                  write: bool = False, batch_size: int = 64, progress: Callable | None = None) -> Inference:
    """Rank candidate preference texts by Σ [log p(chosen | x, c) − log p(rejected | x, c)].

    `pairs`: one user's [{prompt, chosen, rejected}]. `candidates`: texts, {name: text}, or None
    for the persona presets. With ``write=True`` the model first writes a one-sentence preference
    from the pairs (`write_preference`), ranked with the others under the name `WRITTEN` (and
    returned in `Inference.written`). `InputError` for a missing or empty field, no candidates, or
    pairs that are all longer than the context.
    """
    cands = candidate_texts(candidates)
    pairs = check_pairs(list(pairs) if isinstance(pairs, tuple) else pairs)
    written = write_preference(lm, pairs) if write else None
    if written:
        cands.setdefault(written, WRITTEN)
    inference = _rank(lm, pairs, cands, batch_size, progress)
    if inference is None:
        raise InputError(f"Every pair is longer than the model's context of {lm.context_length} tokens; "
                         "there is nothing to score.")
    return dataclasses.replace(inference, written=written) if write else inference


WRITTEN = "written by the model"
WRITE_INSTRUCTION = ("Below are examples of answers a user preferred (chosen) over others (rejected).\n\n{examples}\n\n"
                     "In one sentence, say what kind of response this user prefers. Start with "
                     "\"Generate a response that\".")
WRITE_PAIRS, WRITE_CHARS = 4, 300  # what the instruction quotes: enough to see a pattern, short enough for small contexts


def write_preference(lm, pairs: Sequence[Mapping], *, max_new_tokens: int = 48) -> str | None:
    """A one-sentence preference the model writes from the first pairs (greedy, no preference
    prompt), or None when it writes nothing usable. Useful with larger models; a small one
    tends to paraphrase the examples."""
    def clip(text: str) -> str:
        return text if len(text) <= WRITE_CHARS else text[:WRITE_CHARS].rsplit(" ", 1)[0] + " …"

    def instruction(n: int) -> str:
        return WRITE_INSTRUCTION.format(examples="\n\n".join(
            f"Prompt: {clip(p['prompt'])}\nChosen: {clip(p['chosen'])}\nRejected: {clip(p['rejected'])}"
            for p in pairs[:n]))

    # As many examples as the context holds (a small context may hold none: nothing is written).
    fitting = (instruction(n) for n in range(min(WRITE_PAIRS, len(pairs)), 0, -1))
    query = next((q for q in fitting if fits_context(lm, len(prompt_ids(lm.tokenizer, q)), max_new_tokens)), None)
    if query is None:
        return None
    result = generate(lm, "direct", query, [], DecodeSettings(max_new_tokens=max_new_tokens, greedy=True))
    text = result.text.strip().strip('"').strip()
    sentence = text.split("\n")[0].strip()
    end = sentence.find(". ")
    sentence = sentence[:end + 1] if end >= 0 else sentence
    return sentence or None


def _rank(lm, pairs: list[dict], cands: dict[str, str], batch_size: int,
          progress: Callable | None) -> Inference | None:
    """`infer_persona` on checked pairs and {text: name} candidates; None when every pair is too long."""
    tok = lm.tokenizer
    items: list[tuple[list[int], list[int]]] = []
    plan: dict[tuple[int, str], int | None] = {}  # (pair, candidate) -> its chosen item; None when chosen == rejected
    skipped = []
    for j, pair in enumerate(pairs):
        chosen = tok(pair["chosen"], add_special_tokens=False)["input_ids"]
        rejected = tok(pair["rejected"], add_special_tokens=False)["input_ids"]
        prompts = {c: prompt_ids(tok, pair["prompt"], [c]) for c in cands}
        if not all(fits_context(lm, len(p), max(len(chosen), len(rejected))) for p in prompts.values()):
            skipped.append(j)
            continue
        k = common_prefix_length(chosen, rejected)  # the log-probs of shared leading tokens cancel: score after them
        for c, prompt in prompts.items():
            if k == len(chosen) == len(rejected):
                plan[(j, c)] = None
                continue
            plan[(j, c)] = len(items)
            items += [(prompt + chosen[:k], chosen[k:]), (prompt + chosen[:k], rejected[k:])]
    if len(skipped) == len(pairs):
        return None
    values = prefix_tree_logprobs(lm, items, batch_size=batch_size, progress=progress)
    per_pair: dict[str, list[float | None]] = {c: [] for c in cands}
    for c in cands:
        for j in range(len(pairs)):
            if j in skipped:
                per_pair[c].append(None)
            else:
                g = plan[(j, c)]
                per_pair[c].append(0.0 if g is None else values[g] - values[g + 1])
    totals = {c: sum(v for v in per_pair[c] if v is not None) for c in cands}
    ranking = sorted(totals.items(), key=lambda item: -item[1])  # stable: ties keep the candidates' order
    return Inference(ranking=ranking, names={t: n for t, n in cands.items() if n}, per_pair=per_pair,
                     pairs=len(pairs) - len(skipped), skipped=skipped, model=lm.name)


def user_rows(lm, users: Sequence[dict], cands: Mapping[str, str], *, batch_size: int = 64,
              progress: Callable | None = None) -> list[dict]:
    """One row per user: {index, truth, best, correct, truth_rank, scores, skipped_pairs, seconds}, or
    {index, skipped: True} when every pair is longer than the context. `cands` is {text: name};
    "scores" holds each candidate's score in nats, in the order of `cands`."""
    rows = []
    for n, user in enumerate(users, 1):
        pairs = check_pairs(user["pairs"])
        started = time.perf_counter()
        inference = _rank(lm, pairs, dict(cands), batch_size, None)
        seconds = time.perf_counter() - started
        if inference is None:
            rows.append({"index": user.get("index"), "skipped": True})
        else:
            order = [t for t, _ in inference.ranking]
            rows.append({"index": user.get("index"), "truth": user["truth"], "best": inference.best,
                         "correct": inference.best == user["truth"], "truth_rank": order.index(user["truth"]) + 1,
                         "scores": [dict(inference.ranking)[c] for c in cands],
                         "skipped_pairs": len(inference.skipped), "seconds": seconds})
        if progress:
            progress(n, len(users))
    return rows


def inference_accuracy(lm, users: Sequence[dict], candidates: Sequence[str] | Mapping[str, str] | None = None, *,
                       batch_size: int = 64, progress: Callable | None = None,
                       map_items: Callable = score_all) -> dict:
    """Top-1 accuracy of `infer_persona` against each user's truth, with a 95% Wilson interval.

    Every user needs a truth that is one of the candidates (checked before any scoring). A user
    whose pairs are all longer than the context is left out and counted in "skipped_users".
    Returns ``{accuracy, n, correct, low, high, chance, by_persona {truth: {accuracy, n, correct,
    low, high}}, confusion {truth: {predicted: count}}, seconds_per_user, seconds_median,
    candidates {text: name}, skipped_pairs, skipped_users, model, per_user [...]}``; seconds
    exclude loading. `map_items(users, score)` runs `score` (users -> `user_rows`) over the users:
    all at once by default, or split across processes by `sharding.ShardedMap`.
    """
    cands = candidate_texts(candidates)
    if not users:
        raise InputError("There are no users to score.")
    for user in users:
        truth = user.get("truth")
        if truth is None:
            raise InputError(f"User {user.get('index', '?')} has no {TRUTH!r} to compare with.")
        if truth not in cands:
            raise InputError(f"User {user.get('index', '?')}'s {TRUTH} {truth!r} is not among the candidates; "
                             "add it to the candidates.")
    rows = map_items(users, lambda chunk: user_rows(lm, chunk, cands, batch_size=batch_size, progress=progress))
    per_user = [row for row in rows if not row.get("skipped")]
    skipped_users = [row["index"] for row in rows if row.get("skipped")]
    if not per_user:
        raise InputError(f"Every user's pairs are longer than the model's context of {lm.context_length} tokens; "
                         "there is nothing to score.")
    result = _top1([u["correct"] for u in per_user])
    by_truth = defaultdict(list)
    for u in per_user:
        by_truth[u["truth"]].append(u)
    seconds = sorted(u["seconds"] for u in per_user)
    result.update(
        chance=1 / len(cands),
        by_persona={t: _top1([u["correct"] for u in us]) for t, us in by_truth.items()},
        confusion={t: dict(Counter(u["best"] for u in us)) for t, us in by_truth.items()},
        seconds_per_user=sum(seconds) / len(seconds), seconds_median=seconds[len(seconds) // 2],
        candidates=cands, skipped_pairs=sum(u["skipped_pairs"] for u in per_user), skipped_users=skipped_users,
        model=lm.name,
        per_user=per_user)
    return result


def _top1(correct: list[bool]) -> dict:
    n, k = len(correct), sum(correct)
    low, high = wilson(k, n)
    return {"accuracy": k / n if n else None, "n": n, "correct": k, "low": low, "high": high}
