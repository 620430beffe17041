"""Every decoding method behind one API.

    stream = stream_generate(lm, "persona-judge", query, [pref_a, pref_b], DecodeSettings(seed=0))
    result = generate(lm, "fusion", query, [pref_a, pref_b], settings, alpha=0.5)

`method` is the name of a registered method (`methods.METHODS`). `preferences` is a list (personas
labelled "A", "B", "C", "D" in the order given) or a dict {label: text} (a run spec that picks some
personas keeps their labels). `settings` is a `DecodeSettings` (default: the library defaults);
`**options` are the method's own options (fusion: ``weights``, ``alpha``). Everything is validated
before the first forward: a bad value is an `InputError` with one sentence.

`persona_judge`, `direct_prompt`, `stream_persona_judge` and `stream_direct` are the thin
wrappers scripts use; their keywords are `DecodeSettings` fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError
from .engine import Engine
from .job import Job
from .loading import LoadedModel
from .methods import check_request, method_named
from .prompting import Query
from .sampling import Uniforms
from .settings import DecodeSettings
from .trace import Result, Stream, Trace

Preferences = Sequence[str] | Mapping[str, str] | str


def _check_lengths(lm: LoadedModel, prompts: list[list[int]], max_new_tokens: int) -> None:
    context = lm.context_length
    longest = max(len(p) for p in prompts)
    if context and longest + max_new_tokens > context:
        raise InputError(
            f"The prompt is {longest} tokens; with {max_new_tokens} new tokens it exceeds the model's "
            f"context of {context} tokens. Shorten the query or preferences, or lower max new tokens."
        )


def prepare(lm: LoadedModel, method: str, query: Query, preferences: Preferences = (),
            settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Job:
    """Validate a run and build its prompts and decoder, ready for an `Engine` (no forward yet).

    Raises `InputError` for anything `methods.check_request` refuses, an empty query, or a prompt
    that does not fit the model's context with ``max_new_tokens``.
    """
    prefs, settings, options = check_request(method, preferences, settings, options)
    spec = method_named(method)
    uniforms = Uniforms(settings.seed)
    record = {"method": method, "options": {}, "model": lm.name, "query": query, "preferences": list(prefs.values()),
              "labels": list(prefs), **settings.to_dict(), "seed": uniforms.seed}
    trace = Trace(lm, method, record, list(prefs), ignore_eos, settings.stop)
    prompts, decoder = spec.start(lm, query, prefs, settings, options, uniforms, trace)
    _check_lengths(lm, prompts, settings.max_new_tokens)
    return Job(method, prompts, decoder, trace, spec.period(settings), settings.max_new_tokens,
               settings.reproducible)


def stream_job(lm: LoadedModel, job: Job) -> Stream:
    """One job decoded alone (the batch-of-one case of the engine), as a `Stream` of its steps."""
    return Stream(_alone(lm, job), job.method, job.record)


def _alone(lm: LoadedModel, job: Job):
    engine = Engine(lm, rows=1)
    engine.submit(job)
    try:
        for _, step in engine.stream():
            if step is not None:
                yield step
    finally:  # closed early (Stop): the request is cancelled, its rows freed
        engine.close()
    if job.error is not None:
        raise job.error
    return job.result


def stream_generate(lm: LoadedModel, method: str, query: Query, preferences: Preferences = (),
                    settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Stream:
    """Start a run; iterate the returned `Stream` for its Steps (see the module docstring)."""
    return stream_job(lm, prepare(lm, method, query, preferences, settings, ignore_eos=ignore_eos, **options))


def generate(lm: LoadedModel, method: str, query: Query, preferences: Preferences = (),
             settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Result:
    """Run a method to the end; see `stream_generate`."""
    return stream_generate(lm, method, query, preferences, settings, ignore_eos=ignore_eos, **options).run()


def _settings(settings: DecodeSettings | None, changes: dict) -> DecodeSettings:
    """`settings` (or the defaults) with keyword changes; an unknown keyword is an `InputError`."""
    try:
        return (settings or DecodeSettings()).replace(**changes)
    except TypeError as exc:  # dataclasses.replace on an unknown field
        raise InputError(f"Unknown decoding setting: {exc}.") from None


def stream_persona_judge(lm: LoadedModel, query: Query, pref_a: str, pref_b: str, *,
                         settings: DecodeSettings | None = None, ignore_eos: bool = False, **changes) -> Stream:
    """Persona-judge with two preferences as a stream; keywords are `DecodeSettings` fields."""
    return stream_generate(lm, "persona-judge", query, [pref_a, pref_b], _settings(settings, changes),
                           ignore_eos=ignore_eos)


def persona_judge(lm: LoadedModel, query: Query, pref_a: str, pref_b: str, **kwargs) -> Result:
    """Run Persona-judge to the end; see `stream_persona_judge`."""
    return stream_persona_judge(lm, query, pref_a, pref_b, **kwargs).run()


def stream_direct(lm: LoadedModel, query: Query, prefs: Sequence[str] | str = (), *,
                  settings: DecodeSettings | None = None, ignore_eos: bool = False, **changes) -> Stream:
    """Direct prompting (all preferences in one prompt) as a stream; keywords are `DecodeSettings` fields."""
    return stream_generate(lm, "direct", query, prefs, _settings(settings, changes), ignore_eos=ignore_eos)


def direct_prompt(lm: LoadedModel, query: Query, prefs: Sequence[str] | str = (), **kwargs) -> Result:
    """Run direct prompting to the end; see `stream_direct`."""
    return stream_direct(lm, query, prefs, **kwargs).run()
