"""The live lab: several run specs decoding side by side, all of them rows of one batched engine.

The page has a fixed set of panels, one per run spec it can compare: the panels the registered
methods offer (`engine.methods.Panel`), in their page order (`slots()`); the visitor ticks which to
run. `method_choices(n)` says what can be ticked with n personas, `slot_spec` turns a ticked slot
into a `RunSpec`, and `LabRun` decodes them all together (`engine.Engine`: every step advances
every panel, their feeds sharing forwards), yielding the slot of each token as it is decided; a
panel's tokens are the tokens its spec decodes alone. Nothing here knows about Gradio; the app's
handler renders the panels a few times per second while iterating a `LabRun`.
"""

from __future__ import annotations

import queue
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ..engine.engine import Engine, follow
from ..engine.job import Job
from ..engine.methods import LabOptions, lab_panels
from ..engine.methods import Panel as MethodPanel
from ..engine.settings import DecodeSettings
from ..engine.specs import RunSpec
from ..engine.trace import Result, Step
from ..errors import InputError


def slots() -> tuple[str, ...]:
    """Every panel's slot, in page order (the order of the run API's panel outputs)."""
    return tuple(panel.slot for panel in lab_panels())


def default_slots() -> tuple[str, ...]:
    """The panels ticked when the page opens."""
    return tuple(panel.slot for panel in lab_panels() if panel.default)


def method_panel(slot: str) -> MethodPanel:
    """The panel a slot names; an `InputError` listing the slots otherwise."""
    found = next((p for p in lab_panels() if p.slot == slot), None)
    if found is None:
        raise InputError(f"Unknown method {slot!r}; choose among {', '.join(slots())}.")
    return found


def slot_id(slot: str) -> str:
    """The HTML id suffix of a slot's panel: ``panel-<id>`` and ``tokens-<id>``."""
    return RunSpec.parse(slot).slug


def method_choices(n_personas: int) -> list[tuple[str, str]]:
    """(label, slot) of every panel that can run with `n_personas` preferences. The labels are short
    (several fit on a line); each panel's head says what its method does."""
    return [(p.choice, p.slot) for p in lab_panels() if n_personas in p.personas]


def slot_spec(slot: str, *, alpha: float = 0.0, weights: tuple[float, ...] | None = None,
              alternate: bool = True) -> RunSpec:
    """The RunSpec a panel runs, given the lab's parameters (fusion takes α and weights; the
    Persona-judge panel follows the roles setting)."""
    return RunSpec.parse(method_panel(slot).run_spec(LabOptions(alpha=alpha, weights=weights, alternate=alternate)))


def parse_weights(text: str | None, n_personas: int) -> tuple[float, ...] | None:
    """Fusion weights typed as "2:1" (or "2, 1"); empty means equal weights."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).replace(",", ":").replace(" ", "").split(":")
    try:
        weights = tuple(float(p) for p in parts if p)
    except ValueError:
        raise InputError(f"Fusion weights are numbers separated by ':' (e.g. 2:1); got {text!r}.") from None
    if len(weights) != n_personas:
        raise InputError(f"Fusion needs one weight per persona: {n_personas} personas, {len(weights)} weights "
                         f"({text!r}).")
    return weights


@dataclass
class Panel:
    slot: str
    spec: RunSpec
    job: Job
    steps: list[Step] = field(default_factory=list)
    result: Result | None = None
    first_token_s: float | None = None
    stopped: bool = False  # closed before the end (Stop)

    @property
    def done(self) -> bool:
        return self.result is not None or self.stopped


class LabRun:
    """Every ticked spec on the same query, preferences, settings and seed, decoded together.

    With no `engine` the run has a private one that its iteration steps (one visitor, or a ZeroGPU
    call batching its own panels); with a shared, started `Engine` (one loop for every visitor) its
    panels join that engine's next step and leave when they finish or `close()` cancels them,
    touching nobody else's rows. Iterating yields the slot that just received a step (or finished),
    and None about every `HEARTBEAT_S` while nothing arrives (so a caller can show that the run
    waits for a row, check its time limit, or be stopped). `close()` stops every panel of this run
    (a Stop click); the panels keep what they had.
    """

    HEARTBEAT_S = 0.5

    def __init__(self, lm, query: str, preferences: Mapping[str, str], specs: Mapping[str, RunSpec],
                 settings: DecodeSettings, engine: Engine | None = None):
        if not specs:
            raise InputError("Tick at least one method to compare.")
        if settings.seed is None:  # the same random seed for every panel (each job would draw its own)
            settings = settings.replace(seed=secrets.randbits(31))
        self.settings = settings
        # Every spec is validated (and its prompts built) before anything decodes.
        jobs = {slot: spec.job(lm, query, preferences, settings) for slot, spec in specs.items()}
        self.started = time.perf_counter()
        self.shared = engine is not None
        self.engine = engine if engine is not None else Engine(lm, rows=len(jobs))
        self.events: queue.Queue = queue.Queue()
        self.panels = {slot: Panel(slot, specs[slot], self.engine.submit(job, self.events))
                       for slot, job in jobs.items()}
        self._slot = {id(p.job): slot for slot, p in self.panels.items()}

    def __iter__(self) -> Iterator[str | None]:
        for events in follow(self.engine, self.events, lambda: self.done, self.HEARTBEAT_S):
            if not events:
                yield None
            for job, step in events:
                panel = self.panels[self._slot[id(job)]]
                if step is None:
                    if job.error is not None:
                        raise job.error
                    panel.result = job.result
                    panel.stopped = panel.result is None
                else:
                    panel.steps.append(step)
                    if panel.first_token_s is None:
                        panel.first_token_s = time.perf_counter() - self.started
                yield panel.slot

    @property
    def waiting(self) -> int:
        """0 once a panel decodes (or is about to: rows are free, it waits a few steps for its phase);
        else how many requests of other runs are ahead of this one."""
        jobs = [p.job for p in self.panels.values()]
        if any(j.state != "waiting" for j in jobs) or not self.engine.full:
            return 0
        return min(self.engine.ahead_of(j) for j in jobs) + 1

    def close(self) -> None:
        if self.shared:
            for panel in self.panels.values():
                self.engine.cancel(panel.job)
        else:
            self.engine.close()
        for panel in self.panels.values():
            panel.stopped = panel.result is None

    @property
    def done(self) -> bool:
        return all(p.done for p in self.panels.values())
