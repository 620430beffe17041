"""Does a request decoded among others decode as it does alone? A check to run on any machine.

`mixed_requests(n)` builds n requests of every registered method, cycling through the run specs
each method names to exercise its variants (Persona-judge with 2-4 personas, rotating or fixed,
the official code's behaviour, direct prompting with all, one or no preference, fusion with weights
and α), with different prompts, λ, budgets, seeds and repetition settings. `check_batched`
decodes them together (`rows` at a time) and each alone, and reports how many are identical token
for token (ids, decisions, drafters, judges), the largest |Δp| and |Δq| over the identical ones,
and for each that differs where it first differs and why: the uniform that decided the token lay
closer to the boundary (u against p/q for an acceptance, the sampled token's CDF edge) than the
float rounding that the batch's shape changes. It does so in each mode: "fast" (rows share
forwards) and "reproducible" (each request in forwards of its own: identical by construction,
whatever the dtype). `python -m pjudge_core check-batch` prints it.
"""

from __future__ import annotations

import dataclasses
import random
import time

from ..engine.api import stream_job
from ..engine.methods import METHODS, method_named
from ..engine.requests import Request, generate_many
from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec
from ..errors import InputError

QUERIES = (
    "Describe a sunset over the sea.",
    "Explain the basics of area and perimeter.",
    "Why does warmth make you feel tired?",
    "Can you tell me a story about nuclear physics?",
    "Give me three tips for learning a new language, and explain why each one works.",
    "Hi!",
)
PREFERENCES = (
    "Generate a response that is concise and to the point, without being verbose.",
    "Generate a response that is friendly, witty, funny, and humorous, like a close friend.",
    "Generate a response that can be easily understood by an elementary school student.",
    "Your response should be vivid: richly descriptive, with sensory details and concrete images.",
)


def checked_specs() -> tuple[str, ...]:
    """Every registered method's run specs that exercise its variants (`Method.examples`)."""
    return tuple(spec for method in METHODS.values() for spec in method.examples)


def persona_counts(spec: RunSpec) -> list[int]:
    """How many of `PREFERENCES` (2-4) the spec can run with (its method's rules, its persona subset)."""
    counts = []
    for n in (2, 3, 4):
        try:
            spec.check(list(PREFERENCES[:n]), DecodeSettings())
        except InputError:
            continue
        counts.append(n)
    return counts


def mixed_requests(count: int, *, seed: int = 0, max_new_tokens: int = 64,
                   queries=QUERIES, preferences=PREFERENCES, ignore_eos: bool = False) -> list[Request]:
    """`count` requests cycling through every method's `checked_specs`, with randomly chosen personas
    (2-4, as many as the spec takes), prompt, seed, λ, greedy or not, repetition settings and the
    method's weights where it has them; budgets from 1 to `max_new_tokens`."""
    rnd = random.Random(seed)
    specs = [RunSpec.parse(text) for text in checked_specs()]
    requests = []
    for i in range(count):
        spec = specs[i % len(specs)]
        n = rnd.choice(persona_counts(spec))
        takes_weights = "weights" in method_named(spec.method).options
        options = {"weights": [rnd.choice([1, 2, 3]) for _ in range(n)]} if takes_weights else {}
        settings = DecodeSettings(seed=rnd.randrange(10**6), lam=rnd.choice([1, 3, 4, 4]),
                                  max_new_tokens=rnd.choice([1, max_new_tokens // 4, max_new_tokens // 2,
                                                             max_new_tokens, max_new_tokens]),
                                  greedy=rnd.random() < 0.1, repetition_penalty=rnd.choice([1.0, 1.1, 1.3]),
                                  no_repeat_ngram_size=rnd.choice([0, 0, 3]))
        requests.append(Request(spec, rnd.choice(queries), list(preferences[:n]), settings, options,
                                ignore_eos=ignore_eos))
    return requests


def _trace(result) -> list[tuple]:
    return [(s.token_id, s.decision, s.drafter, s.judge) for s in result.steps]


def _why(batched, alone) -> dict:
    """Where the two runs first differ, and the margin of the choice made there."""
    i = next(i for i, (a, b) in enumerate(zip(_trace(batched) + [None], _trace(alone) + [None])) if a != b)
    a, b = batched.steps[i], alone.steps[i]
    where = {"index": i, "batched": [a.token_id, a.decision], "alone": [b.token_id, b.decision]}
    drift = max([abs(x.p - y.p) for x, y in zip(batched.steps[:i], alone.steps[:i])] + [0.0])
    if b.u is not None and b.q:  # an acceptance test: u against p/q of the drafted token
        ratio = (b.p if b.decision == "accepted" else b.rejected_p) / (b.q if b.decision == "accepted" else b.rejected_q)
        where["reason"] = f"acceptance test u = {b.u:.6f} against p/q = {ratio:.6f}"
    else:
        where["reason"] = "the sampled token lies at a CDF edge: its probabilities differ by float rounding"
    where["largest_dp_before"] = drift
    return where


MODES = ("fast", "reproducible")  # rows sharing forwards; each request in forwards of its own


def in_mode(request: Request, mode: str) -> Request:
    return dataclasses.replace(request, settings=request.settings.replace(reproducible=mode == "reproducible"))


def check_batched(lm, requests: list[Request], rows: int, modes=MODES, progress=lambda message: None) -> dict:
    """Decode `requests` together (`rows` at a time) in each of `modes`, and each alone; the report the
    module docstring describes, one entry per mode under "modes"."""
    alone, started = [], time.perf_counter()
    for k, request in enumerate(requests):
        progress(f"alone {k + 1}/{len(requests)}")
        alone.append(stream_job(lm, request.job(lm)).run())
    alone_s = time.perf_counter() - started
    report = {"model": lm.name, "device": str(lm.model.device), "dtype": lm.dtype, "rows": rows,
              "requests": len(requests), "tokens": sum(len(r.token_ids) for r in alone), "seconds_alone": alone_s,
              "modes": {}}
    for mode in modes:
        progress(f"{len(requests)} requests together, {rows} rows at a time ({mode})")
        started = time.perf_counter()
        batched = generate_many(lm, [in_mode(r, mode) for r in requests], rows=rows)
        together_s = time.perf_counter() - started
        identical, dp, dq, differing = 0, 0.0, 0.0, []
        for k, (request, x, y) in enumerate(zip(requests, batched, alone)):
            if _trace(x) == _trace(y):
                identical += 1
                dp = max([dp] + [abs(a.p - b.p) for a, b in zip(x.steps, y.steps)])
                dq = max([dq] + [abs(a.q - b.q) for a, b in zip(x.steps, y.steps) if a.q is not None])
            else:
                differing.append({"request": k, "spec": str(request.spec), "personas": len(request.preferences),
                                  **_why(x, y)})
        report["modes"][mode] = {"identical": identical, "max_dp_identical": dp, "max_dq_identical": dq,
                                 "differing": differing, "seconds_together": together_s}
    return report


def format_check(report: dict) -> str:
    lines = [f"{report['requests']} mixed requests on {report['model']} ({report['device']}, {report['dtype']}), "
             f"{report['tokens']} tokens; one by one {report['seconds_alone']:.0f} s"]
    for mode, m in report["modes"].items():
        lines += [f"{mode}: together ({report['rows']} rows) {m['seconds_together']:.0f} s; identical token for "
                  f"token: {m['identical']} of {report['requests']}",
                  f"  largest |p batched - p alone| over the identical runs: {m['max_dp_identical']:.2e}, "
                  f"|q ...|: {m['max_dq_identical']:.2e}"]
        for d in m["differing"]:
            lines.append(f"  request {d['request']} ({d['spec']}, {d['personas']} personas) differs at token "
                         f"{d['index']}: batched {d['batched']}, alone {d['alone']}; {d['reason']}; largest |dp| "
                         f"before: {d['largest_dp_before']:.1e}")
    return "\n".join(lines)
