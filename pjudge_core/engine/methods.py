"""Every decoding method behind one API.

    stream = stream_generate(lm, "persona-judge", query, [pref_a, pref_b], DecodeSettings(seed=0))
    result = generate(lm, "fusion", query, [pref_a, pref_b], settings, alpha=0.5)

`preferences` is a list (personas labelled "A", "B", "C", "D" in the order given) or a dict
{label: text} (a run spec that picks some personas keeps their labels). `settings` is a
`DecodeSettings` (default: the library defaults); `**options` are the method's own options
(fusion: ``weights``, ``alpha``). Everything is validated before the first forward: a bad value
is an `InputError` with one sentence. `METHODS` names each method with a one-line description.

`persona_judge`, `direct_prompt`, `stream_persona_judge` and `stream_direct` are the thin
wrappers scripts use; their keywords are `DecodeSettings` fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError
from .direct import direct_steps
from .engine import Engine, Task
from .fusion import fusion_steps
from .loading import LoadedModel
from .persona_judge import fixed, persona_judge_steps, rotating, swap_once
from .prompting import combine_preferences, prompt_ids, prompt_text
from .sampling import Uniforms, official_residual, residual_distribution
from .settings import DecodeSettings
from .trace import Recorder, Result, Stream

LABELS = ("A", "B", "C", "D")
METHODS = {
    "persona-judge": "Persona-judge (Algorithm 1): one persona drafts λ tokens, the next judges them in one "
                     "pass; the roles rotate every block (fixed roles with alternate=False: Persona-judge-Base).",
    "direct": "Direct prompting: the preferences combined into one prompt (one preference: that persona "
              "alone; none: no preference).",
    "fusion": "Logit fusion: every token from ℓ₀ + (1 + α)(Σ wᵢℓᵢ − ℓ₀); α = 0 is product-of-experts, "
              "α > 0 contrasts the personas with no preference.",
    "official": "Official-code behaviour, not Algorithm 1: roles swap once and never back, and a rejection "
                "may resample from the draft's excess max(0, q − p) (Monncyann/Persona-judge).",
}
OPTIONS = {"persona-judge": (), "direct": (), "fusion": ("weights", "alpha"), "official": ()}


def labelled(preferences: Sequence[str] | Mapping[str, str] | str) -> dict[str, str]:
    """{label: text}: a list is labelled A, B, C, D in order; a dict keeps its labels."""
    if isinstance(preferences, str):
        preferences = [preferences]
    if isinstance(preferences, Mapping):
        items = dict(preferences)
        bad = [k for k in items if k not in LABELS]
        if bad:
            raise InputError(f"Persona labels must be among {', '.join(LABELS)}; got {', '.join(map(str, bad))}.")
    else:
        items = dict(zip(LABELS, preferences))
        if len(preferences) > len(LABELS):
            raise InputError(f"At most {len(LABELS)} personas are supported; got {len(preferences)}.")
    for label, text in items.items():
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"Preference {label} is empty; write a preference text or pick a preset.")
    return items


def _check_persona_count(method: str, prefs: dict[str, str], settings: DecodeSettings) -> None:
    n = len(prefs)
    if method in ("persona-judge", "official") and n < 2:
        raise InputError(f"{method} needs at least two preferences (A drafts, B judges); got {n}.")
    if method == "persona-judge" and not settings.alternate and n != 2:
        raise InputError(f"Persona-judge-Base (fixed roles) needs exactly two preferences; got {n}. "
                         "Use alternating roles for three or four personas.")
    if method == "official" and n != 2:
        raise InputError(f"The official-code behaviour is defined for two preferences only; got {n}.")
    if method == "fusion" and n < 1:
        raise InputError("Fusion needs at least one preference.")


def fusion_options(n: int, weights=None, alpha=0.0) -> tuple[list[float], float]:
    """Validated (weights normalised to sum 1, α)."""
    if weights is None:
        weights = [1.0] * n
    try:
        weights = [float(w) for w in weights]
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise InputError("Fusion weights and α must be numbers.") from None
    if len(weights) != n:
        raise InputError(f"Fusion needs one weight per persona: {n} personas, {len(weights)} weights.")
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise InputError("Fusion weights must be at least 0 and not all 0.")
    if not alpha >= 0 or alpha != alpha or alpha == float("inf"):
        raise InputError(f"Fusion α must be a finite number of at least 0; got {alpha}.")
    total = sum(weights)
    return [w / total for w in weights], alpha


def _check_lengths(lm: LoadedModel, prompts: list[list[int]], max_new_tokens: int) -> None:
    context = lm.context_length
    longest = max(len(p) for p in prompts)
    if context and longest + max_new_tokens > context:
        raise InputError(
            f"The prompt is {longest} tokens; with {max_new_tokens} new tokens it exceeds the model's "
            f"context of {context} tokens. Shorten the query or preferences, or lower max new tokens."
        )


def check_request(method: str, preferences, settings: DecodeSettings | None = None,
                  options: dict | None = None) -> tuple[dict[str, str], DecodeSettings, dict]:
    """Validate a run without a model: ({label: text}, settings, normalised options).

    Raises `InputError` for an unknown method or option, a wrong number of personas, an empty
    preference or bad fusion weights.
    """
    options = dict(options or {})
    if method not in METHODS:
        raise InputError(f"Unknown method {method!r}; known methods: {', '.join(METHODS)}.")
    unknown = sorted(set(options) - set(OPTIONS[method]))
    misplaced = [name for name in unknown if name in DecodeSettings.__dataclass_fields__]
    if misplaced:
        raise InputError(f"{misplaced[0]} is a decoding setting, not a {method} option: pass "
                         f"settings=DecodeSettings({misplaced[0]}=...).")
    if unknown:
        allowed = ", ".join(OPTIONS[method]) or "none"
        raise InputError(f"{method} has no option {', '.join(unknown)}; its options: {allowed}.")
    settings = settings or DecodeSettings()
    if not isinstance(settings, DecodeSettings):
        raise InputError("settings must be a DecodeSettings.")
    prefs = labelled(preferences)
    _check_persona_count(method, prefs, settings)
    if method == "fusion":
        weights, alpha = fusion_options(len(prefs), options.get("weights"), options.get("alpha", 0.0))
        options = {"weights": weights, "alpha": alpha}
    return prefs, settings, options


def prepare(lm: LoadedModel, method: str, query: str, preferences: Sequence[str] | Mapping[str, str] | str = (),
            settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Task:
    """Validate a run and build its prompts and decoder, ready for an `Engine` (no forward yet).

    Raises `InputError` for anything `check_request` refuses, an empty query, or a prompt that
    does not fit the model's context with ``max_new_tokens``.
    """
    prefs, settings, options = check_request(method, preferences, settings, options)
    uniforms = Uniforms(settings.seed)
    record = {"method": method, "options": {}, "model": lm.name, "query": query, "preferences": list(prefs.values()),
              "labels": list(prefs), **settings.to_dict(), "seed": uniforms.seed}
    recorder = Recorder(lm, method, record, list(prefs), ignore_eos)
    start = {"direct": _start_direct, "fusion": _start_fusion}.get(method, _start_persona_judge)
    prompts, decoder = start(lm, method, query, prefs, settings, options, uniforms, recorder)
    period = settings.lam + 1 if start is _start_persona_judge else None  # a block: λ drafting steps, one judging
    return Task(method, prompts, decoder, recorder, period)


def stream_task(lm: LoadedModel, task: Task) -> Stream:
    """One task decoded alone (the batch-of-one case of the engine), as a `Stream` of its steps."""
    return Stream(_alone(lm, task), task.method, task.recorder.settings)


def _alone(lm: LoadedModel, task: Task):
    engine = Engine(lm, rows=1)
    ticket = engine.submit(task)
    try:
        for _, step in engine.stream():
            if step is not None:
                yield step
    finally:  # closed early (Stop): the request is cancelled, its rows freed
        engine.close()
    if ticket.error is not None:
        raise ticket.error
    return ticket.result


def stream_generate(lm: LoadedModel, method: str, query: str,
                    preferences: Sequence[str] | Mapping[str, str] | str = (),
                    settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Stream:
    """Start a run; iterate the returned `Stream` for its Steps (see the module docstring)."""
    return stream_task(lm, prepare(lm, method, query, preferences, settings, ignore_eos=ignore_eos, **options))


def _start_direct(lm, method, query, prefs, settings, options, uniforms, recorder):
    """Each `_start_*` builds a method's prompts (validated) and its decoder given its rows."""
    record = recorder.settings
    texts = list(prefs.values())
    prompt = prompt_ids(lm.tokenizer, query, texts)
    _check_lengths(lm, [prompt], settings.max_new_tokens)
    record.update(instruction=combine_preferences(texts), prompt=prompt_text(lm.tokenizer, query, texts))
    return [prompt], lambda rows: direct_steps(rows[0], recorder, settings, uniforms)


def _persona_prompts(lm, query, prefs, record) -> dict[str, list[int]]:
    record["prompts"] = {label: prompt_text(lm.tokenizer, query, [text]) for label, text in prefs.items()}
    return {label: prompt_ids(lm.tokenizer, query, [text]) for label, text in prefs.items()}


def _start_fusion(lm, method, query, prefs, settings, options, uniforms, recorder):
    record = recorder.settings
    prompts = _persona_prompts(lm, query, prefs, record)
    weights, alpha = options["weights"], options["alpha"]
    base = prompt_ids(lm.tokenizer, query, []) if alpha > 0 else None  # ℓ₀ only matters when α > 0
    rows = list(prompts.values()) + ([base] if base is not None else [])  # the last row is ℓ₀ when α > 0
    _check_lengths(lm, rows, settings.max_new_tokens)
    record["options"] = {"weights": dict(zip(prefs, weights)), "alpha": alpha}
    if base is not None:
        record["prompts"]["none"] = prompt_text(lm.tokenizer, query, [])
    labels = list(prefs)
    return rows, lambda rows: fusion_steps(rows, labels, weights, alpha, recorder, settings, uniforms)


def _start_persona_judge(lm, method, query, prefs, settings, options, uniforms, recorder):
    prompts = _persona_prompts(lm, query, prefs, recorder.settings)
    _check_lengths(lm, list(prompts.values()), settings.max_new_tokens)
    labels = list(prefs)
    if method == "official":  # roles swap once; rejections may resample from the draft's excess
        schedule, residual = (swap_once(labels) if settings.alternate else fixed(labels)), official_residual
    else:
        schedule, residual = (rotating(labels) if settings.alternate else fixed(labels)), residual_distribution

    def decoder(rows):
        return persona_judge_steps(dict(zip(labels, rows)), recorder, settings, uniforms, schedule, residual)
    return list(prompts.values()), decoder


def generate(lm: LoadedModel, method: str, query: str, preferences: Sequence[str] | Mapping[str, str] | str = (),
             settings: DecodeSettings | None = None, *, ignore_eos: bool = False, **options) -> Result:
    """Run a method to the end; see `stream_generate`."""
    return stream_generate(lm, method, query, preferences, settings, ignore_eos=ignore_eos, **options).run()


def _settings(settings: DecodeSettings | None, changes: dict) -> DecodeSettings:
    """`settings` (or the defaults) with keyword changes; an unknown keyword is an `InputError`."""
    try:
        return (settings or DecodeSettings()).replace(**changes)
    except TypeError as exc:  # dataclasses.replace on an unknown field
        raise InputError(f"Unknown decoding setting: {exc}.") from None


def stream_persona_judge(lm: LoadedModel, query: str, pref_a: str, pref_b: str, *,
                         settings: DecodeSettings | None = None, ignore_eos: bool = False, **changes) -> Stream:
    """Persona-judge with two preferences as a stream; keywords are `DecodeSettings` fields."""
    return stream_generate(lm, "persona-judge", query, [pref_a, pref_b], _settings(settings, changes),
                           ignore_eos=ignore_eos)


def persona_judge(lm: LoadedModel, query: str, pref_a: str, pref_b: str, **kwargs) -> Result:
    """Run Persona-judge to the end; see `stream_persona_judge`."""
    return stream_persona_judge(lm, query, pref_a, pref_b, **kwargs).run()


def stream_direct(lm: LoadedModel, query: str, prefs: Sequence[str] | str = (), *,
                  settings: DecodeSettings | None = None, ignore_eos: bool = False, **changes) -> Stream:
    """Direct prompting (all preferences in one prompt) as a stream; keywords are `DecodeSettings` fields."""
    return stream_generate(lm, "direct", query, prefs, _settings(settings, changes), ignore_eos=ignore_eos)


def direct_prompt(lm: LoadedModel, query: str, prefs: Sequence[str] | str = (), **kwargs) -> Result:
    """Run direct prompting to the end; see `stream_direct`."""
    return stream_direct(lm, query, prefs, **kwargs).run()
