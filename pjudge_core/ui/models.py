"""The app's model: loaded once per process, shared by every visitor, swapped on request.

`ModelHolder.get(name, quantize)` returns the loaded model, loading it (and freeing the previous
one first) when another is asked for; a lock keeps two requests from loading at once. Tests put
preloaded tiny models in with `register`. A warm-up run right after loading makes the first real
Run fast (the first forwards of a fresh model are several times slower: allocator, kernels).
"""

from __future__ import annotations

import threading

from ..engine.hub import local_models
from ..engine.loading import BUNDLED, LoadedModel, load_model
from ..engine.methods import generate
from ..engine.settings import DecodeSettings
from ..errors import PJudgeError
from ..presets import ModelPreset, example_queries, model_preset, model_presets, presets


def warm_up(lm: LoadedModel) -> None:
    """One tiny run right after loading; it must never break loading."""
    try:
        generate(lm, "persona-judge", "Hi", ["Be brief.", "Be kind."], DecodeSettings(max_new_tokens=6, lam=2,
                                                                                    greedy=True))
    except PJudgeError:
        pass


class ModelHolder:
    """One loaded model per process (a model is shared, not per-visitor data)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.key: tuple[str, str | None] | None = None
        self.lm: LoadedModel | None = None
        self.registered: dict[str, LoadedModel] = {}

    def register(self, name: str, lm: LoadedModel) -> None:
        with self.lock:
            self.registered[name] = lm

    def current(self) -> LoadedModel | None:
        return self.lm

    def is_loaded(self, name: str, quantize: str | None = None) -> bool:
        name = (name or "").strip() or BUNDLED
        wanted = (name, None) if name in self.registered else (name, quantize)
        return self.lm is not None and self.key == wanted

    def get(self, name: str, quantize: str | None = None) -> LoadedModel:
        name = (name or "").strip() or BUNDLED
        with self.lock:
            if name in self.registered:
                self.key, self.lm = (name, None), self.registered[name]
                return self.lm
            if self.key == (name, quantize) and self.lm is not None:
                return self.lm
            self.lm, self.key = None, None  # free the old weights before loading new ones
            lm = load_model(name, quantize=quantize)
            warm_up(lm)
            self.key, self.lm = (name, quantize), lm
            return lm


def quantize_option(four_bit) -> str | None:
    """The page's 4-bit checkbox as `load_model`'s ``quantize``."""
    return "4bit" if four_bit else None


def default_model(on_spaces: bool) -> str:
    """The bundled offline model, or on Spaces the preset marked ``spaces_default``."""
    if on_spaces:
        for m in model_presets():
            if m.spaces_default:
                return m.id
    return BUNDLED


def model_choices(allowed: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(label, id) for the model dropdown: the bundled model, then what is already on this machine
    (the local Hugging Face cache, GGUF files in $PJUDGE_GGUF_DIR), then the other presets. With
    `allowed` (a public deployment's allow-list) only those."""
    presets = {m.id: m for m in model_presets()}
    ids = list(dict.fromkeys([BUNDLED, *local_models(), *presets]))
    if allowed is not None:
        ids = [i for i in ids if i in allowed] + [i for i in allowed if i not in ids]
    choices = []
    for model_id in ids:
        preset = presets.get(model_id)
        if preset:
            choices.append((f"{preset.name}  ·  {preset.size}" if preset.size else preset.name, model_id))
        else:
            choices.append((f"{model_id}  ·  on this machine", model_id))
    return choices


def recommended_settings(model_id: str) -> DecodeSettings:
    """The preset's recommended settings for a model (the library defaults for any other)."""
    preset: ModelPreset | None = model_preset((model_id or "").strip() or BUNDLED)
    return preset.decode_settings() if preset else DecodeSettings()


def first_run(model_id: str) -> tuple[str | None, str, DecodeSettings]:
    """What a first visitor runs without touching anything: the first ready-made pair, the first
    example query, and the model's recommended settings (a test keeps this run fluent)."""
    pairs, queries = list(presets().pairs), example_queries()
    return (pairs[0] if pairs else None, queries[0] if queries else "Describe a sunset over the sea.",
            recommended_settings(model_id))


def describe(lm: LoadedModel) -> str:
    ctx = lm.context_length
    return (f"Loaded: {lm.name} · device {lm.device} · dtype {lm.dtype}" + (" · 4-bit" if lm.quantize == "4bit" else "")
            + (f" · context {ctx} tokens" if ctx else ""))
