"""Compare run specs on one query by persona fit: K seeded samples per spec, each one scored.

    result = compare(lm, "Describe a sunset.", ["Be concise.", "Be funny."], "persona-judge,direct", samples=4)
    result["by_spec"]["persona-judge"]["A"]      # {n, mean, low, high, sd}: mean fit under A, nats/token
    result["beats_baseline"]["persona-judge"]    # {wins, n, rate, low, high}: samples where it beats direct on every persona

    for update in stream_compare(...):           # one update per answer; close() (or stop iterating) to stop
        update["done"], update["total"], update["sample"], update["result"]

Sample k of every spec uses the seed `batch.record_seed(settings.seed, k)`, so the specs share
their random numbers (as batch runs do) and a fixed seed reproduces the comparison; with
``settings.seed=None`` one base seed is drawn and recorded. Each answer is scored with
`fit.answer_fits` under every persona of the run (not only the spec's own), on the tokens the
model emitted (without a final end-of-sequence token); an answer with no tokens is kept with
``mean: None`` and a reason under "skipped". The summary is `fit.summarize_fits` with the
samples paired by index. The scores are the same model's opinion of its own answers: partly
circular (see `fit`).

`stream_compare` validates everything before returning its generator, so a bad spec or setting
is an `InputError` at the call, not at the first step. Interrupting it (closing the generator)
takes effect between answers, or within a token with ``every_token=True`` (what the app uses).
"""

from __future__ import annotations

import queue
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence

from ...engine.engine import DEFAULT_ROWS, Engine, follow
from ...engine.personas import labelled
from ...engine.requests import check_rows
from ...engine.settings import DecodeSettings
from ...engine.specs import RunSpec, parse_specs
from ...errors import InputError
from ..self_judge.fit import BASELINE, NOTE, answer_fits, summarize_fits
from .batch import DEFAULT_SPECS, record_seed


def _plan(lm, query, preferences, specs, samples, settings) -> tuple[dict, list[RunSpec], DecodeSettings, int]:
    if not isinstance(query, str) or not query.strip():
        raise InputError("The query is empty; type a question or instruction.")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise InputError(f"The number of samples per run spec must be a whole number of at least 1; got {samples!r}.")
    prefs = labelled(preferences)
    if not prefs:
        raise InputError("Comparing by persona fit needs at least one preference text.")
    settings = settings or DecodeSettings()
    if not isinstance(settings, DecodeSettings):
        raise InputError("settings must be a DecodeSettings.")
    specs = parse_specs(specs)
    for spec in specs:
        spec.check(prefs, settings)
    base_seed = settings.seed if settings.seed is not None else secrets.randbits(31)
    return prefs, specs, settings.replace(seed=base_seed), base_seed


def stream_compare(lm, query: str, preferences: Sequence[str] | Mapping[str, str],
                   specs: str | Sequence[str | RunSpec] = DEFAULT_SPECS, samples: int = 3,
                   settings: DecodeSettings | None = None, *, baseline: str = BASELINE,
                   every_token: bool = False, rows: int = DEFAULT_ROWS,
                   engine: Engine | None = None) -> Iterator[dict]:
    """A generator of ``{"done", "total", "sample", "result"}``, one per answer (module docstring).

    The answers decode together, `rows` at a time (`engine.Engine`), and are reported as they
    finish. With ``every_token=True`` it also yields ``{"done", "total", "tokens", "partial",
    "sample": None, "result": None}`` after each step of the engine (a token of every answer in
    flight): ``tokens`` decided so far by the answers in flight, ``partial`` the fraction of their
    budgets that makes, so a caller can show fine progress ((done + partial) / total), and closing
    the generator stops within a token instead of after an answer. With a shared, started
    `engine` (an app's one loop for every visitor) the answers join it instead of a private one,
    and closing the generator cancels only them.
    """
    prefs, specs, settings, base_seed = _plan(lm, query, preferences, specs, samples, settings)
    rows = check_rows(rows)
    eos = lm.eos_token_ids
    head = {"query": query, "model": lm.name, "preferences": prefs, "specs": {s.key: s.label for s in specs},
            "samples": samples, "seed": base_seed, "settings": settings.to_dict(), "note": NOTE}
    plans = [(k, spec, settings.replace(seed=record_seed(base_seed, k))) for k in range(samples) for spec in specs]
    jobs = [spec.job(lm, query, prefs, s) for _, spec, s in plans]  # every answer validated before any forward

    order = {spec.key: i for i, spec in enumerate(specs)}

    def run() -> Iterator[dict]:
        answers: list[dict] = []
        total = len(plans)
        private = engine is None
        decoding = Engine(lm, rows) if private else engine
        events: queue.Queue = queue.Queue()
        submitted = [decoding.submit(job, events) for job in jobs]
        owners = {id(job): plan for job, plan in zip(submitted, plans)}
        in_flight: dict[int, int] = {}  # id(job) -> tokens decided so far
        budget = settings.max_new_tokens
        try:
            for batch in follow(decoding, events, lambda: len(answers) == total):
                for job, step in batch:
                    if step is not None:
                        in_flight[id(job)] = in_flight.get(id(job), 0) + 1
                        continue
                    in_flight.pop(id(job), None)
                    if job.error is not None:
                        raise job.error
                    k, spec, seed_settings = owners[id(job)]
                    sample = _scored(lm, query, prefs, k, spec, seed_settings.seed, job.result, eos)
                    answers.append(sample)
                    answers.sort(key=lambda a: (a["sample"], order[a["spec"]]))  # as if decoded one by one
                    summary = summarize_fits([{"key": a["sample"], **a} for a in answers], list(prefs),
                                             baseline=baseline)
                    yield {"done": len(answers), "total": total, "sample": sample,
                           "result": {**head, **summary, "done": len(answers), "total": total,
                                      "answers": list(answers)}}
                if every_token and len(answers) < total:
                    yield {"done": len(answers), "total": total, "tokens": sum(in_flight.values()),
                           "partial": sum(min(1.0, n / budget) for n in in_flight.values()), "sample": None,
                           "result": None}
        finally:  # closed mid-answer: every decoder of this comparison stops where it is
            if private:
                decoding.close()
            else:
                for job in submitted:
                    decoding.cancel(job)

    return run()


def _scored(lm, query, prefs, k: int, spec: RunSpec, seed: int, result, eos) -> dict:
    """One finished answer with its fit under every persona (on the emitted tokens, without a final EOS)."""
    ids = list(result.token_ids)
    while ids and ids[-1] in eos:
        ids.pop()
    sample = {"spec": spec.key, "label": spec.label, "sample": k, "seed": seed, "text": result.text,
              "new_tokens": result.stats["new_tokens"], "stopped_by": result.stats["stopped_by"],
              "mean": None, "fit": None, "skipped": None}
    if ids:
        fit = answer_fits(lm, [(query, ids)], prefs, skip_long=True)[0]
        if fit is None:
            sample["skipped"] = "longer than the context"
        else:
            sample.update(mean=fit.mean, fit=fit.to_dict())
    else:
        sample["skipped"] = "empty answer"
    return sample


def compare(lm, query: str, preferences: Sequence[str] | Mapping[str, str],
            specs: str | Sequence[str | RunSpec] = DEFAULT_SPECS, samples: int = 3,
            settings: DecodeSettings | None = None, *, baseline: str = BASELINE,
            progress: Callable | None = None) -> dict:
    """Run `stream_compare` to the end; `progress(done, total)` after each answer.

    Returns ``{query, model, preferences, specs {key: label}, samples, seed, settings, note,
    labels, baseline, by_spec {spec: {label: {n, mean, low, high, sd}}}, beats_baseline {spec:
    {wins, n, rate, low, high}}, done, total, answers [...]}``; each answer is ``{spec, label,
    sample, seed, text, new_tokens, stopped_by, mean {label: nats/token}, fit (Fit.to_dict()),
    skipped}``.
    """
    last = None
    for update in stream_compare(lm, query, preferences, specs, samples, settings, baseline=baseline):
        last = update
        if progress:
            progress(update["done"], update["total"])
    return last["result"]
