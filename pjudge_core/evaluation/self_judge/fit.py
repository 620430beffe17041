"""Persona fit: what an answer did for each persona, in the eyes of the model that scores it.

For a query x, a response y and each persona P (labelled "A", "B", ... as the decoders label
them), the per-token implicit reward

    fit_P(t) = log p(y_t | x, P, y_<t) − log p(y_t | x, y_<t)

from the model's raw (unwarped) log-softmax in float32, by teacher forcing: one forward per
prompt over the whole response (the persona prompts and the no-preference prompt are built by
`prompting.prompt_ids`, exactly as Persona-judge and direct prompting build them). Positive
means the persona made the model more willing to write that token. Summed over the response it is
AlignX's implicit reward; `Fit.mean` is nats per token, comparable across answers of different
lengths.

What it is: the same model's opinion of which persona an answer sounds like, not a human
judgement. When that model also wrote the answer the score is partly circular (an answer sampled
with persona A is, by construction, likely under A).

`persona_fit` scores one answer; `answer_fits` many at once (batched, optionally skipping answers
longer than the context); `score_fit_records` a batch run (`eval fit`); `summarize_fits` the
per-spec means with 95% intervals and the share of prompts where a spec beats direct prompting on
every persona, shared by `eval fit`, the report and `compare`.

Scoring shares work by default (``share=True``, `logprobs`): each prompt is fed once for every
answer scored under it (the answers of several run specs to one query), each persona's system
turn once for all queries; ``share=False`` scores every (prompt, answer) whole in flat batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from ...engine.methods import BASELINE  # the run spec every other spec is compared with
from ...engine.personas import labelled
from ...engine.prompting import prompt_ids
from ...engine.trace import IncrementalDetokenizer
from ...errors import InputError
from ..runs.records import spec_key
from ..runs.sharding import score_all
from ..scoring.logprobs import fits_context, token_logprobs
from ..stats import mean_interval, wilson

NOTE = ("Persona fit is the scoring model's own opinion (log p(y | x, persona) − log p(y | x) per token), "
        "not a human judgement; when the same model wrote the answers it is partly circular.")


@dataclass(frozen=True)
class Fit:
    """Persona fit of one response (see the module docstring). Plain data; `to_dict()` is JSON."""

    labels: list[str]
    preferences: dict[str, str]  # {label: preference text}
    token_ids: list[int]
    texts: list[str]  # each token's text ("".join(texts) is the decoded response), for a heatmap
    per_token: dict[str, list[float]]  # {label: fit of each token, nats}
    mean: dict[str, float]  # {label: mean per-token fit, nats per token}
    total: dict[str, float]  # {label: summed fit = AlignX's implicit reward r(y)}

    def to_dict(self) -> dict:
        return asdict(self)


def response_ids(lm, response: str | Sequence[int]) -> list[int]:
    """Token ids of a response given as text (tokenised without special tokens) or as ids."""
    if isinstance(response, str):
        ids = lm.tokenizer(response, add_special_tokens=False)["input_ids"]
    elif isinstance(response, torch.Tensor):
        ids = response.reshape(-1).tolist()
    else:
        ids = list(response)
    vocab = lm.model.get_input_embeddings().num_embeddings
    if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab for t in ids):
        raise InputError(f"Response token ids must be whole numbers in [0, {vocab}), the model's vocabulary.")
    if not ids:
        raise InputError("The response is empty; there is nothing to score.")
    return ids


def token_texts(tokenizer, ids: Sequence[int]) -> list[str]:
    """The text each token adds (a character split over several tokens is shown on its last token)."""
    detok = IncrementalDetokenizer(tokenizer)
    texts = [detok.push(t) for t in ids]
    texts[-1] += detok.flush()
    return texts


def answer_fits(lm, answers: Sequence[tuple[str, str | Sequence[int]]],
                preferences: Sequence[str] | Mapping[str, str], *, skip_long: bool = False,
                batch_size: int | None = None, share: bool = True, progress: Callable | None = None) -> list[Fit | None]:
    """`persona_fit` of each (query, response), scored together in batches.

    With ``skip_long=True`` an answer whose longest prompt plus response exceeds the model's
    context gives None instead of an `InputError`. `batch_size`: tree nodes per forward with
    `share` (default 64), whole sequences without (default 8).
    """
    prefs = labelled(preferences)
    if not prefs:
        raise InputError("Persona fit needs at least one preference text.")
    tok = lm.tokenizer
    plans, items = [], []
    for query, response in answers:
        ids = response_ids(lm, response)
        prompts = {"": prompt_ids(tok, query, [])} | {label: prompt_ids(tok, query, [t]) for label, t in prefs.items()}
        longest = max(len(p) for p in prompts.values())
        if not fits_context(lm, longest, len(ids)):
            if skip_long:
                plans.append(None)
                continue
            raise InputError(f"The prompt plus response is {longest + len(ids)} tokens, longer than the model's "
                             f"context of {lm.context_length}; shorten the response.")
        plans.append((ids, len(items)))
        items += [(prompt, ids) for prompt in prompts.values()]
    values = token_logprobs(lm, items, batch_size=batch_size, share=share, progress=progress)
    fits: list[Fit | None] = []
    for plan in plans:
        if plan is None:
            fits.append(None)
            continue
        ids, at = plan
        base = values[at]
        per_token = {label: [c - b for c, b in zip(values[at + 1 + i], base)] for i, label in enumerate(prefs)}
        fits.append(Fit(labels=list(prefs), preferences=dict(prefs), token_ids=ids, texts=token_texts(tok, ids),
                        per_token=per_token, mean={k: sum(v) / len(v) for k, v in per_token.items()},
                        total={k: sum(v) for k, v in per_token.items()}))
    return fits


def persona_fit(lm, query: str, response: str | Sequence[int], preferences: Sequence[str] | Mapping[str, str],
                *, batch_size: int | None = None, share: bool = True) -> Fit:
    """Per-token and mean persona fit of `response` to `query` under each preference.

    `response` is text or token ids; `preferences` a list (labelled A, B, ...) or {label: text}.
    The scores are `lm`'s own opinion, partly circular when `lm` wrote the response (see the
    module docstring). One forward per prompt (personas plus no preference), several per forward
    when `batch_size` allows; an `InputError` for an empty query, response or preference, or a
    response that does not fit the context.
    """
    return answer_fits(lm, [(query, response)], preferences, batch_size=batch_size, share=share)[0]


# --------------------------------------------------------------------------- summaries

def summarize_fits(rows: Sequence[dict], labels: Sequence[str], *, baseline: str = BASELINE) -> dict:
    """Per-spec mean fit with 95% t-intervals, and how often each spec beats the baseline.

    `rows` are ``{"key": what pairs answers (prompt id or sample index), "spec": run spec,
    "mean": {label: nats per token}}`` (rows without "mean" are ignored). A spec beats the
    baseline on a key when its fit is higher under every persona; the share has a 95% Wilson
    interval. Returns ``{"labels", "baseline", "by_spec": {spec: {label: {n, mean, low, high,
    sd}}}, "beats_baseline": {spec: {wins, n, rate, low, high}}}`` ("baseline" is None and
    "beats_baseline" empty when no row has the baseline spec).
    """
    labels = list(labels)
    scored = [r for r in rows if r.get("mean") is not None]
    by_spec: dict[str, dict] = defaultdict(dict)
    for r in scored:
        by_spec[r["spec"]][r["key"]] = r["mean"]
    summary = {spec: {label: mean_interval([m[label] for m in fits.values()]) for label in labels}
               for spec, fits in by_spec.items()}
    beats = {}
    if baseline in by_spec:
        base = by_spec[baseline]
        for spec, fits in by_spec.items():
            if spec == baseline:
                continue
            keys = [k for k in fits if k in base]
            wins = sum(all(fits[k][label] > base[k][label] for label in labels) for k in keys)
            low, high = wilson(wins, len(keys))
            beats[spec] = {"wins": wins, "n": len(keys), "rate": wins / len(keys) if keys else None,
                           "low": low, "high": high}
    return {"labels": labels, "baseline": baseline if baseline in by_spec else None, "by_spec": summary,
            "beats_baseline": beats}


# --------------------------------------------------------------------------- batch runs

def run_preferences(records: Sequence[dict], source: str = "the records") -> dict[str, str]:
    """The {label: text} personas of a batch run; records of runs with other personas are refused.

    Records store their run's personas under ``run.preferences``; records written before that
    block existed have only their own method's (``settings.labels`` / ``settings.preferences``),
    which must agree with the rest.
    """
    runs: list[dict[str, str]] = []
    own: dict[str, str] = {}
    for n, rec in enumerate(records, 1):
        prefs = (rec.get("run") or {}).get("preferences")
        settings = rec.get("settings") or {}
        mine = dict(zip(settings.get("labels") or [], settings.get("preferences") or []))
        known = runs[0] if runs else own
        if (prefs and runs and labelled(prefs) != runs[0]) or any(known.get(k, v) != v for k, v in mine.items()):
            raise InputError(f"{source}: record {n} comes from a run with other preferences; score each run on "
                             "its own.")
        if prefs and not runs:
            runs.append(labelled(prefs))
        own.update(mine)
    if not runs and not own:
        raise InputError(f"{source}: the records name no preferences; is this a batch output file?")
    found = runs[0] if runs else labelled(own)
    if any(found.get(k, v) != v for k, v in own.items()):
        raise InputError(f"{source}: the records come from runs with other preferences; score each run on its own.")
    return found


def fit_rows(lm, records: Sequence[dict], preferences: Mapping[str, str], *, batch_size: int | None = None,
             share: bool = True, progress: Callable | None = None) -> list[dict]:
    """One row per record: {id, spec, mean {label: nats/token}, tokens}, or {id, spec, reason} when
    it is skipped (empty, or longer than the context)."""
    answers, kept, rows = [], [], []
    for rec in records:
        rows.append({"id": str(rec["id"]), "spec": spec_key(rec)})
        if rec["text"]:
            answers.append((rec["prompt"], rec["text"]))
            kept.append(rows[-1])
        else:
            rows[-1]["reason"] = "empty response"
    fits = answer_fits(lm, answers, preferences, skip_long=True, batch_size=batch_size, share=share,
                       progress=progress)
    for row, fit in zip(kept, fits):
        if fit is None:
            row["reason"] = "longer than the context"
        else:
            row.update(mean=fit.mean, tokens=len(fit.token_ids))
    return rows


def score_fit_records(records: Sequence[dict], lm, *, source: str = "the records", baseline: str = BASELINE,
                      batch_size: int | None = None, share: bool = True, progress: Callable | None = None,
                      map_items: Callable = score_all) -> dict:
    """Persona fit of every record of a batch run under every persona of its run (`eval fit`).

    Records whose prompt plus response exceed the context, or whose text is empty, are skipped
    and listed under "skipped". Returns the `summarize_fits` summary plus ``kind: "fit"``,
    "metric", "model", "run_model", "preferences", "scores" (one row per scored record: id,
    spec, mean {label: nats/token}, tokens) and "skipped". `map_items(records, score)` runs
    `score` (records -> `fit_rows`) over the records: all at once by default, or split across
    processes by `sharding.ShardedMap`.
    """
    prefs = run_preferences(records, source)
    rows = map_items(records, lambda chunk: fit_rows(lm, chunk, prefs, batch_size=batch_size, share=share,
                                                     progress=progress))
    scores = [row for row in rows if "reason" not in row]
    skipped = [row for row in rows if "reason" in row]
    if not scores:
        raise InputError(f"{source}: no record could be scored ({len(skipped)} skipped: empty or longer than the "
                         "model's context).")
    run_models = {(rec.get("run") or {}).get("model") or (rec.get("settings") or {}).get("model") for rec in records}
    run_model = run_models.pop() if len(run_models) == 1 else None
    summary = summarize_fits([{"key": s["id"], **s} for s in scores], list(prefs), baseline=baseline)
    return {"kind": "fit", "metric": f"persona fit under {lm.name}", "model": lm.name, "run_model": run_model,
            "same_model": run_model == lm.name, "preferences": prefs, **summary, "scores": scores,
            "skipped": skipped}
