"""ZeroGPU calls: the GPU time each asks for, and how long its handler may decode.

ZeroGPU (`spaces.GPU`) runs every call in a process forked from the main one, for at most the
``duration`` the call asked for; the request is compared with the visitor's remaining daily quota
(2 minutes unauthenticated) and shorter ones are served first, so a call asks for what its inputs
need (`GpuTime`): an estimate from the per-token cost of the model (``zerogpu_token_s`` in
``presets/models.json``; CUDA is emulated in the main process, so nothing can be measured at
start-up) times the tokens and panels (or answers, or sequences to score), with a margin, plus the
fixed time before and after the handler runs. Inside the call the handler stops decoding at
`GpuTime.limit`, before the asked duration runs out, so the run ends cleanly (its record written)
instead of being killed. (What a visitor reads across the call's boundary: `serving.served`.)

The `spaces` package multiplies what a call asks for by its GPU's duration factor (1.0 on an H200,
1.5 on the half-card RTX PRO 6000 slices; its config, read at run time: `duration_factor`), and
compares the product with the visitor's daily quota. So no call asks for more than the anonymous
quota (`ANONYMOUS_QUOTA_S`) divided by that factor: an anonymous visitor can always run, and the
longest runs stop at that limit (their record written) rather than being refused by ZeroGPU.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping

from ..engine.methods import method_named
from ..engine.specs import RunSpec
from ..errors import PJudgeError
from ..evaluation.self_judge.inference import candidate_texts
from ..presets import model_preset
from . import following, insight
from .access import Access
from .form import LabForm, read_form, values_of

START_S = 5.0  # before the handler runs: the call's process starts and the weights move onto its GPU
END_S = 3.0  # after decoding stops: charts, the record written, the last update pickled back
MARGIN = 1.5  # on the estimate: the per-token costs are estimates, and sampling varies
MIN_S = 10  # the smallest request (bad input, which is answered at once, asks for this)
DEFAULT_TOKEN_S = 0.05  # a model without a ZeroGPU cost in its preset
FOUR_BIT_SLOWER = 1.5  # bitsandbytes de-quantises the weights at every forward
FIT_FORWARDS = 2.0  # scoring a finished answer under every persona: its sequences in a batch or two
# Answers decoding together share every forward (the batched engine): on a GPU, where a forward's time
# is mostly streaming the weights, each extra row adds a fraction of a lone row's time.
ROW_COST = 0.15
SCORE_TOKENS = 1.0  # one sequence scored (inference, judge capacity) costs about one decoded token
WRITE_TOKENS = 64  # the candidate the model writes in persona inference (greedy, one sentence)
ANONYMOUS_QUOTA_S = 120  # ZeroGPU's daily GPU time of a visitor who is not logged in (hub docs, July 2026)


def duration_factor() -> float:
    """What the installed `spaces` package multiplies a call's duration by on this machine's GPU (1.0
    where it cannot tell: off ZeroGPU, or with a `spaces` that has no such config)."""
    try:
        from spaces.zero.config import get_config
    except ImportError:
        return 1.0
    try:
        return float(get_config().get("duration_factor", 1.0))
    except Exception:  # noqa: BLE001 (a config the package cannot read: no factor known)
        return 1.0


def forwards_per_token(spec: RunSpec, form: LabForm) -> float:
    """Model forwards one answer token costs, as its method says (`Method.forwards_per_token`)."""
    return method_named(spec.method).forwards_per_token(spec.settings(form.settings))


class GpuTime:
    """What a ZeroGPU call asks for (seconds, from its inputs) and how long its handler may decode.
    Off ZeroGPU every request is None and the limit is the app's own (`Access.time_limit`)."""

    def __init__(self, access: Access | None = None, zero_gpu: bool = False,
                 token_costs: Mapping[str, float] | None = None, factor: float | None = None):
        self.access = access or Access()
        self.zero_gpu = zero_gpu
        self.token_costs = dict(token_costs or {})  # model id -> s per token, over the presets (tests)
        self._factor = factor  # the GPU's duration factor; read from `spaces` when first needed

    # ------------------------------------------------------------------ costs
    def token_s(self, model_name, four_bit) -> float:
        name = (model_name or "").strip()
        preset = model_preset(name)
        cost = self.token_costs.get(name) or (preset.zerogpu_token_s if preset else None) or DEFAULT_TOKEN_S
        return cost * (FOUR_BIT_SLOWER if four_bit else 1.0)

    @property
    def factor(self) -> float:
        if self._factor is None:
            self._factor = duration_factor() if self.zero_gpu else 1.0
        return self._factor

    @property
    def max_s(self) -> int:
        """The largest request: the app's own run limit plus the time around it, but never more than
        an anonymous visitor's quota once ZeroGPU applies its duration factor (module docstring)."""
        return min(math.ceil(self.access.run_seconds + START_S + END_S), math.floor(ANONYMOUS_QUOTA_S / self.factor))

    def _asked(self, tokens: float, token_s: float) -> int | None:
        if not self.zero_gpu:
            return None
        return max(MIN_S, min(self.max_s, math.ceil(START_S + MARGIN * tokens * token_s + END_S)))

    def run(self, model_name, four_bit, form: LabForm) -> int | None:
        """Seconds a lab run asks for: its panels decode together (the slowest method's tokens, plus a
        share per other panel), and each answer is scored."""
        return self._asked(self._together(form, 1), self.token_s(model_name, four_bit))

    def front(self, model_name, four_bit, form: LabForm, samples: int) -> int | None:
        """Seconds "Sample K per method" asks for: K answers per method decoding together, each scored."""
        return self._asked(self._together(form, samples), self.token_s(model_name, four_bit))

    @staticmethod
    def _together(form: LabForm, samples: int) -> float:
        """Forwards, in lone-row token units, of `samples` answers per ticked method decoded together."""
        costs = [form.settings.max_new_tokens * forwards_per_token(spec, form) for spec in form.specs.values()]
        answers = samples * len(costs)
        if form.settings.reproducible:  # every answer in forwards of its own: nothing shared
            return samples * sum(costs) + answers * FIT_FORWARDS
        return max(costs) * (1 + ROW_COST * (answers - 1)) + answers * FIT_FORWARDS

    def infer(self, model_name, four_bit, pairs: int, candidates: int, write: bool) -> int | None:
        """Seconds persona inference asks for: chosen and rejected under every candidate and none."""
        tokens = 2 * pairs * (candidates + 1 + bool(write)) * SCORE_TOKENS + (WRITE_TOKENS if write else 0)
        return self._asked(tokens, self.token_s(model_name, four_bit))

    def follows(self, model_name, four_bit, personas: int) -> int | None:
        """Seconds "Measure on this query" asks for: its no-preference answers decoding together, then each
        scored under every persona, the placebo and no preference."""
        answers, tokens = following.SEEDS, following.TOKENS
        return self._asked(tokens * (1 + ROW_COST * (answers - 1)) + answers * (personas + 2) * FIT_FORWARDS,
                           self.token_s(model_name, four_bit))

    def capacity(self, model_name, four_bit, pairs: int) -> int | None:
        """Seconds judge capacity asks for: each pair's two answers with and without the persona."""
        return self._asked(4 * pairs * SCORE_TOKENS, self.token_s(model_name, four_bit))

    def limit(self, asked: int | None) -> float | None:
        """How long a handler may decode inside a call that asked for `asked` seconds: the app's own
        limit, and on ZeroGPU what is left once the time around the handler is set aside."""
        limits = [x for x in (self.access.time_limit, None if asked is None else asked - START_S - END_S)
                  if x is not None]
        return min(limits) if limits else None

    # ------------------------------------------------------------------ spaces.GPU's duration
    def duration(self, handler: Callable, estimate: Callable[[dict], int | None]) -> Callable[..., int]:
        """`duration` for `spaces.GPU(handler)`: ZeroGPU calls it with the call's own arguments; they
        are bound to the handler's parameters and handed to `estimate`. Input the handler refuses
        (it answers at once with a message) asks for the minimum."""
        signature = inspect.signature(handler)

        def asked(*args, **kwargs) -> int:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                return estimate(bound.arguments) or MIN_S
            except (PJudgeError, TypeError, ValueError):
                return MIN_S

        return asked

    def form(self, arguments: dict, **changes) -> LabForm:
        """The lab form from a handler's bound arguments, with `changes` to its fields."""
        return read_form(self.access, {**values_of(arguments), **changes})

    def run_duration(self, handler: Callable) -> Callable[..., int]:
        return self.duration(handler, lambda a: self.run(a["model_name"], a["four_bit"], self.form(a)))

    def front_duration(self, handler: Callable) -> Callable[..., int]:
        return self.duration(handler, lambda a: self.front(
            a["model_name"], a["four_bit"], self.form(a, max_new_tokens=a["tokens"], reproducible=a["reproducible"]),
            int(float(a["samples"]))))

    def follows_duration(self, handler: Callable) -> Callable[..., int]:
        return self.duration(handler, lambda a: self.follows(a["model_name"], a["four_bit"],
                                                             len(self.form(a, max_new_tokens=following.TOKENS).preferences)))

    def infer_duration(self, handler: Callable) -> Callable[..., int]:
        return self.duration(handler, lambda a: self.infer(
            a["model_name"], a["four_bit"], len(a["rows"] or []), len(candidate_texts(insight.candidates(a["kind"]))),
            bool(a["write"])))

    def capacity_duration(self, handler: Callable) -> Callable[..., int]:
        return self.duration(handler, lambda a: self.capacity(a["model_name"], a["four_bit"], int(float(a["n"]))))
