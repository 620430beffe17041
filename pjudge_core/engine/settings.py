"""`DecodeSettings`: the settings every decoding method shares, defined once.

The library's defaults live here and nowhere else: the CLI, the batch runner, the benchmark and
the app build a `DecodeSettings` (the app and the CLI through `DecodeSettings.from_inputs`, which
maps an empty field to the default below) and pass it on. A setting that only one method has
(fusion's weights and α) is a keyword option of that method, not a field here.

The object is immutable and validated on construction: a bad value raises `InputError` with one
readable sentence, before any model is loaded. ``seed=None`` means "draw a random seed"; the
seed actually used is recorded in every `Result`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..errors import InputError

# Human names of the fields, for messages (the CLI flag and the app label say the same).
LABELS = {
    "max_new_tokens": "Max new tokens",
    "lam": "λ (tokens drafted per block)",
    "alternate": "Alternate roles",
    "temperature": "Temperature",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "greedy": "Greedy",
    "seed": "Seed",
    "repetition_penalty": "Repetition penalty",
    "no_repeat_ngram_size": "No-repeat n-gram size",
    "reproducible": "Reproducible",
    "stop": "Stop strings",
}


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding settings shared by every method (see the module docstring)."""

    max_new_tokens: int = 128
    lam: int = 4  # λ: tokens drafted per block (Persona-judge); the paper's best value
    alternate: bool = True  # swap drafter and judge every block; False is Persona-judge-Base
    temperature: float = 0.9  # the paper's scripts: T 0.9, top-k 20, top-p 0.9
    top_k: int = 20  # 0 = off
    top_p: float = 0.9  # 1.0 = off
    greedy: bool = False
    seed: int | None = None
    # Applied to the generated output only, never to the prompt (each role's prompt holds a
    # different persona; penalising it would make p/q measure the penalty, not the preference).
    repetition_penalty: float = 1.0  # 1.0 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    # Rows share forwards by default (fast; in bfloat16, or on a GPU whose kernels depend on the batch's
    # shape, a token may then differ from a lone run by rounding). Reproducible: the request's rows go
    # through forwards of their own, shaped as when it decodes alone, so its tokens never depend on its
    # batch-mates (docs/decoding.md, "What a seed reproduces").
    reproducible: bool = False
    # The answer ends before the first occurrence of any of these strings (OpenAI's `stop`); a string
    # completed inside a Persona-judge block drops the block's later tokens (docs/decoding.md, "Stop strings").
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        _whole(self, "max_new_tokens", low=1)
        _whole(self, "lam", low=1)
        _flag(self, "alternate")
        _flag(self, "greedy")
        _number(self, "temperature")
        _whole(self, "top_k", low=0)
        _number(self, "top_p")
        _number(self, "repetition_penalty")
        _whole(self, "no_repeat_ngram_size", low=0)
        _flag(self, "reproducible")
        _strings(self, "stop")
        if self.seed is not None:
            _whole(self, "seed", low=0)
        if not self.greedy and not self.temperature > 0:
            raise InputError("Temperature must be above 0 (use greedy decoding for a deterministic run).")
        if not 0 < self.top_p <= 1:
            raise InputError(f"Top-p must be in (0, 1]; got {self.top_p}.")
        if not self.repetition_penalty > 0:
            raise InputError(f"Repetition penalty must be above 0 (1.0 = off); got {self.repetition_penalty}.")

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_inputs(cls, **raw) -> "DecodeSettings":
        """Settings from loosely typed input (form fields, API calls, CLI strings).

        ``None`` or an empty string means the default above (``seed``: random); numbers may come
        as strings or as floats holding a whole number. Anything else is an `InputError` naming
        the field.
        """
        known = {f.name: f for f in fields(cls)}
        values = {}
        for name, value in raw.items():
            if name not in known:
                raise InputError(f"Unknown decoding setting {name!r}; known: {', '.join(known)}.")
            blank = value == "" if isinstance(known[name].default, tuple) else isinstance(value, str) and not value.strip()
            if value is None or blank:  # (a stop string of white space, such as "\n\n", is a stop string)
                continue  # the dataclass default
            values[name] = _coerce(name, value, known[name].default)
        return cls(**values)

    def replace(self, **changes) -> "DecodeSettings":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON values (stop strings as a list), equal to what a record read back holds."""
        return {**asdict(self), "stop": list(self.stop)}


def _coerce(name: str, value, default):
    label = LABELS[name]
    if isinstance(default, tuple):  # stop strings: one string, or a list of them
        return (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        raise InputError(f"{label} must be true or false; got {value!r}.")
    if isinstance(value, bool):
        raise InputError(f"{label} must be a number; got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label} must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise InputError(f"{label} must be a finite number; got {value!r}.")
    if isinstance(default, int) or name == "seed":
        if number != int(number):
            raise InputError(f"{label} must be a whole number; got {value!r}.")
        return int(number)
    return number


def _whole(settings, name: str, low: int) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{LABELS[name]} must be a whole number; got {value!r}.")
    if value < low:
        raise InputError(f"{LABELS[name]} must be at least {low}; got {value}.")


def _number(settings, name: str) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{LABELS[name]} must be a finite number; got {value!r}.")


def _strings(settings, name: str) -> None:
    value = getattr(settings, name)
    if isinstance(value, list):  # a list is what JSON gives; the field keeps a tuple (hashable, frozen)
        object.__setattr__(settings, name, value := tuple(value))
    if not isinstance(value, tuple) or not all(isinstance(s, str) and s for s in value):
        raise InputError(f"{LABELS[name]} must be a list of non-empty texts; got {value!r}.")


def _flag(settings, name: str) -> None:
    if not isinstance(getattr(settings, name), bool):
        raise InputError(f"{LABELS[name]} must be true or false; got {getattr(settings, name)!r}.")
