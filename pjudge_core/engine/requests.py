"""Many runs decoded together: `Request`, `stream_many`, `generate_many`.

    requests = [Request("persona-judge", query, [a, b], DecodeSettings(seed=s)) for s in range(8)]
    results = generate_many(lm, requests, rows=8)            # a Result per request, in order
    batch = stream_many(lm, requests + [Request("fusion(alpha=0.5)", query, [a, b])])
    for request, step in batch:                                # each token as it is decided
        ...
    batch.results                                              # once exhausted (None where stopped)

A request is any run spec (``persona-judge``, ``direct[A]``, ``fusion(alpha=0.5,weights=2:1)``, ...)
or method name with its query, preferences, `DecodeSettings` (its own seed) and method options, so
any mix decodes in one batch. Every request is validated before the first forward: a bad one is an
`InputError` naming it, and nothing has run. ``rows`` is how many requests decode together; the
others wait and join as rows free up. A request decoded together with others yields the tokens
and decisions it yields alone (`engine`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError
from .engine import DEFAULT_ROWS, MAX_ROWS, Engine
from .job import Job
from .prompting import Query
from .settings import DecodeSettings
from .specs import RunSpec
from .trace import Result, Step


@dataclass(frozen=True, eq=False)
class Request:
    spec: str | RunSpec  # a run spec or a method name
    query: Query  # a text, or a conversation (`prompting`)
    preferences: Sequence[str] | Mapping[str, str] | str = ()
    settings: DecodeSettings | None = None
    options: Mapping = field(default_factory=dict)  # method options (fusion: weights, alpha) over the spec's
    ignore_eos: bool = False

    def job(self, lm) -> Job:
        return RunSpec.parse(self.spec).job(lm, self.query, self.preferences, self.settings,
                                            ignore_eos=self.ignore_eos, options=self.options)


def check_rows(rows) -> int:
    """`rows` as a whole number in [1, MAX_ROWS], or an `InputError` saying so."""
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS:
        raise InputError(f"Rows (requests decoded together) must be a whole number from 1 to {MAX_ROWS}; "
                         f"got {rows!r}.")
    return rows


class Batch:
    """Iterate for (request, step) as tokens are decided; `.results` is set once exhausted.
    `close()` stops every request where it is (their results stay None)."""

    def __init__(self, lm, requests: Sequence[Request], rows: int = DEFAULT_ROWS):
        self.requests = list(requests)
        jobs = []
        for i, request in enumerate(self.requests):  # every request checked before any forward
            try:
                jobs.append(request.job(lm))
            except InputError as exc:
                raise InputError(f"Request {i + 1} ({RunSpec.parse(request.spec).key}): {exc}") from None
        self.engine = Engine(lm, check_rows(rows))
        self.jobs: list[Job] = [self.engine.submit(job) for job in jobs]
        self._owner = {id(j): r for j, r in zip(self.jobs, self.requests)}
        self.results: list[Result | None] | None = None

    def __iter__(self) -> Iterator[tuple[Request, Step]]:
        try:
            for job, step in self.engine.stream():
                if step is not None:
                    yield self._owner[id(job)], step
                elif job.error is not None:
                    raise job.error
        finally:
            self.engine.close()
        self.results = [j.result for j in self.jobs]

    def close(self) -> None:
        self.engine.close()

    def run(self) -> list[Result]:
        for _ in self:
            pass
        return self.results


def stream_many(lm, requests: Sequence[Request], rows: int = DEFAULT_ROWS) -> Batch:
    """Decode `requests` together, `rows` at a time; iterate for (request, step)."""
    return Batch(lm, requests, rows)


def generate_many(lm, requests: Sequence[Request], rows: int = DEFAULT_ROWS) -> list[Result]:
    """Decode `requests` together, `rows` at a time; a `Result` per request, in order."""
    return Batch(lm, requests, rows).run()
