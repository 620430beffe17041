"""The registry of decoding methods: each method declares itself once, as a `Method`, in its own module.

A `Method` says everything the rest of the package needs to know about it: its name and one-line
description, how many personas it takes (`check`), its own options, how it starts (its prompts and
its decoder, a generator that yields where it needs logits), its block period (for the engine's
admission), its other names (``persona-judge-base``), how a run spec of it is named, what one of
its tokens costs in forwards (for a ZeroGPU call's duration), which panels the lab offers for it, a
slow reference decoder, and the run specs a batched-vs-alone check should exercise. Run specs, the
command line, the lab, ZeroGPU's estimate, the batch check and the reports read the registry; no
other code compares a method's name. An unknown name is an `InputError`, never a default.

`register(method)` adds one (the package's `__init__` registers the shipped ones; a test may add a
toy method and `unregister` it). `check_request` validates a run against its method, without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...errors import InputError
from ..personas import labelled
from ..settings import DecodeSettings

# The paper's comparison: Persona-judge against direct prompting (every preference in one prompt).
DEFAULT_METHOD = "persona-judge"
BASELINE = "direct"
DEFAULT_SPECS = f"{DEFAULT_METHOD},{BASELINE}"


@dataclass(frozen=True)
class LabOptions:
    """The lab's parameters that a panel's run spec may take (the page's "Decoding parameters")."""

    alpha: float = 0.0  # fusion's α
    weights: tuple[float, ...] | None = None  # fusion's weights; None = equal
    alternate: bool = True  # the roles setting of the Persona-judge panel


@dataclass(frozen=True)
class Panel:
    """A panel the lab offers for a method: a checkbox on the page and the panel it shows."""

    slot: str  # the checkbox's value and the panel's identity: a run spec, e.g. "direct[A]"
    choice: str  # the checkbox's label (short: several fit on a line)
    about: str  # the panel head's line: what the method does there
    position: int  # where the panel sits on the page, and so its place among the run API's outputs
    personas: tuple[int, ...] = (2, 3, 4)  # the persona counts the lab offers it for
    default: bool = False  # ticked when the page opens
    spec: Callable[[LabOptions], str] | None = None  # the run spec it runs (default: the slot itself)

    def run_spec(self, options: LabOptions) -> str:
        return self.slot if self.spec is None else self.spec(options)


Reference = Callable[..., list[tuple[int, str, str | None]]]  # (lm, query, prefs, settings, options) -> steps


def _no_options(n_personas: int, options: dict) -> dict:
    return options


def _plain_title(name: str) -> Callable:
    return lambda personas, options: (name, options, personas is not None)


@dataclass(frozen=True)
class Method:
    """One decoding method (see the module docstring). `start(lm, query, prefs, settings, options,
    uniforms, trace)` returns (the prompts, one KV row each; a function of those rows giving the
    decoder); `check(prefs, settings)` raises an `InputError` for a persona count the method cannot
    take; `read_options(n_personas, options)` validates and normalises the method's own options;
    `title(personas, options)` names a run spec of the method: (its name, the options still to show,
    whether to list its personas); `drop_defaults(options)` leaves out options that only restate
    a default, so that fusion(alpha=0) is plain fusion."""

    name: str
    description: str
    start: Callable
    check: Callable[[dict, DecodeSettings], None] = lambda prefs, settings: None
    options: tuple[str, ...] = ()
    option_labels: Mapping[str, str] = field(default_factory=dict)  # short names in a spec's label ("α")
    read_options: Callable[[int, dict], dict] = _no_options
    parse_option: Callable[[str, str], object] | None = None  # a spec's text value of an option of its own
    drop_defaults: Callable[[dict], dict] = lambda options: options
    variants: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # other names and what they imply
    title: Callable | None = None
    period: Callable[[DecodeSettings], int | None] = lambda settings: None  # steps per block (engine admission)
    forwards_per_token: Callable[[DecodeSettings], float] = lambda settings: 1.0  # as if decoded alone
    judged: bool = False  # its steps name a drafter and a judge: the lab draws its blocks
    panels: tuple[Panel, ...] = ()
    reference: Reference | None = None
    examples: tuple[str, ...] = ()  # run specs that exercise every variant (the batched-vs-alone check)

    def spec_title(self, personas: tuple[str, ...] | None, options: dict) -> tuple[str, dict, bool]:
        return (self.title or _plain_title(self.name))(personas, dict(options))


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add `method` to the registry (its name and its variants' names must be new)."""
    taken = set(METHODS) | {v for m in METHODS.values() for v in m.variants}
    clash = sorted(({method.name} | set(method.variants)) & taken)
    if clash:
        raise ValueError(f"a method named {clash[0]!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    METHODS.pop(name, None)


def method_named(name: str) -> Method:
    """The registered method called `name`; an `InputError` listing the known ones otherwise."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise InputError(f"Unknown method {name!r}; known methods: {', '.join(METHODS)}.")
    return method


def variant(name: str) -> tuple[Method, dict] | None:
    """(method, the options its name implies) for a method's name or one of its variants' names."""
    if name in METHODS:
        return METHODS[name], {}
    for method in METHODS.values():
        if name in method.variants:
            return method, dict(method.variants[name])
    return None


def lab_panels() -> list[Panel]:
    """Every panel the lab offers, in page order."""
    return sorted((panel for method in METHODS.values() for panel in method.panels), key=lambda p: p.position)


def check_request(name: str, preferences, settings: DecodeSettings | None = None,
                  options: dict | None = None) -> tuple[dict[str, str], DecodeSettings, dict]:
    """Validate a run without a model: ({label: text}, settings, normalised options).

    Raises `InputError` for an unknown method or option, a wrong number of personas, an empty
    preference or a bad option value.
    """
    options = dict(options or {})
    method = method_named(name)
    unknown = sorted(set(options) - set(method.options))
    misplaced = [key for key in unknown if key in DecodeSettings.__dataclass_fields__]
    if misplaced:
        raise InputError(f"{misplaced[0]} is a decoding setting, not a {name} option: pass "
                         f"settings=DecodeSettings({misplaced[0]}=...).")
    if unknown:
        allowed = ", ".join(method.options) or "none"
        raise InputError(f"{name} has no option {', '.join(unknown)}; its options: {allowed}.")
    settings = settings or DecodeSettings()
    if not isinstance(settings, DecodeSettings):
        raise InputError("settings must be a DecodeSettings.")
    prefs = labelled(preferences)
    method.check(prefs, settings)
    return prefs, settings, method.read_options(len(prefs), options)
