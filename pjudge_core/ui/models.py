"""The app's models: shared by every visitor, held one of two ways.

* On demand (your machine, a dedicated GPU, a CPU Space): `ModelHolder.get(name, quantize)`
  returns the loaded model, loading it (and freeing the previous one first) when another is asked
  for; a lock keeps two requests from loading at once. Visitors decoding or scoring hold the model
  with `use(...)`: another model is loaded only once nobody uses the current one (a request waits
  up to `SWAP_WAIT_S` for that, then gets a sentence), so a swap never breaks anybody's run. There,
  every visitor's runs share one batched engine per model (`engine`), stepping in its own thread,
  and the model's forwards from every thread take turns (`turns`).
* Loaded at start-up (ZeroGPU): `preload` loads and warms up every model the deployment offers,
  in the main process, before the app serves; from then on `get` hands out only those and never
  loads (a call runs in a forked process: a model it loaded would die with it, inside the
  visitor's GPU time).
Tests put preloaded tiny models in with `register`. A warm-up run right after loading makes the
first real Run fast (the first forwards of a fresh model are several times slower: allocator,
kernels, the chat template compiled once), and on ZeroGPU every call's process inherits it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from ..engine.api import generate
from ..engine.engine import DEFAULT_ROWS, Engine
from ..engine.hub import local_models
from ..engine.loading import BUNDLED, LoadedModel, first_line, load_model
from ..engine.settings import DecodeSettings
from ..errors import InputError, PJudgeError
from ..presets import ModelPreset, example_queries, model_preset, model_presets, presets
from . import turns

Key = tuple[str, "str | None"]  # (model name, quantize)
SWAP_WAIT_S = 20.0  # how long a request for another model waits for the visitors of the current one


def warm_up(lm: LoadedModel) -> None:
    """One tiny run right after loading; it must never break loading."""
    try:
        generate(lm, "persona-judge", "Hi", ["Be brief.", "Be kind."], DecodeSettings(max_new_tokens=6, lam=2,
                                                                                    greedy=True))
    except PJudgeError:
        pass


class ModelHolder:
    """The models of this process (a model is shared, not per-visitor data)."""

    def __init__(self, swap_wait_s: float = SWAP_WAIT_S):
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a model loaded, or a visitor done with one
        self.swap_wait_s = swap_wait_s
        self.users: dict[Key, int] = {}  # visitors using each model right now (`use`)
        self.engines: dict[int, Engine] = {}  # id(model) -> its shared engine (on-demand deployments)
        self.models: dict[Key, LoadedModel] = {}  # on demand: at most one; preloaded: every offered one
        self.registered: dict[str, LoadedModel] = {}
        self.preloaded = False  # True once `preload` ran: `get` never loads again
        self.warmed: dict[Key, float] = {}  # when each model finished its warm-up (time.monotonic())

    def names(self) -> list[str]:
        """The models held, as a visitor reads them."""
        return [name + (" (4-bit)" if quantize else "") for name, quantize in self.models]

    def register(self, name: str, lm: LoadedModel) -> None:
        with self.lock:
            self.registered[name] = lm

    @staticmethod
    def key(name: str, quantize: str | None = None) -> Key:
        return (name or "").strip() or BUNDLED, quantize

    def _find(self, key: Key) -> LoadedModel | None:
        return self.models.get(key) or self.registered.get(key[0])  # a registered model is what it is

    def loaded(self, name: str, quantize: str | None = None) -> LoadedModel | None:
        """The model, if it is loaded (nothing is loaded by asking)."""
        return self._find(self.key(name, quantize))

    def is_loaded(self, name: str, quantize: str | None = None) -> bool:
        return self.loaded(name, quantize) is not None

    def preload(self, keys: Iterable[Key], load: Callable[..., LoadedModel] | None = None, **load_kwargs) -> None:
        """Load (a registered name is taken as it is; `load` defaults to `load_model`) and warm up
        every (name, quantize), in order, then hold them for good: `get` never loads after this."""
        load = load or load_model
        with self.lock:
            for key in keys:
                key = self.key(*key)
                name, quantize = key
                lm = self.registered.get(name) if name in self.registered and quantize is None else None
                lm = lm or load(name, quantize=quantize, **load_kwargs)
                try:
                    warm_up(lm)
                except Exception as exc:  # noqa: BLE001 (e.g. a CUDA emulation gap: the model may still run in a call)
                    print(f"warning: the warm-up of {name} failed: {first_line(exc)}", file=sys.stderr)
                self.models[key] = lm
                self.warmed[key] = time.monotonic()
            self.preloaded = True

    def get(self, name: str, quantize: str | None = None) -> LoadedModel:
        with self.changed:
            return self._get(self.key(name, quantize))

    @contextlib.contextmanager
    def use(self, name: str, quantize: str | None = None) -> Iterator[LoadedModel]:
        """The model, held for the duration of the block: it is not swapped for another meanwhile."""
        key = self.key(name, quantize)
        with self.changed:
            lm = self._get(key)
            self.users[key] = self.users.get(key, 0) + 1
        try:
            yield lm
        finally:
            with self.changed:
                self.users[key] -= 1
                self.changed.notify_all()

    def engine(self, lm: LoadedModel, rows: int = DEFAULT_ROWS) -> Engine:
        """The batched engine every visitor of `lm` shares, stepping in its own thread (started on
        first use; the model's forwards from other threads then take turns with it)."""
        with self.lock:
            engine = self.engines.get(id(lm))
            if engine is None:
                turns.install(lm)
                engine = self.engines[id(lm)] = Engine(lm, rows).start()
            return engine

    def _get(self, key: Key) -> LoadedModel:
        """Under the lock: the model, loaded if needed once nobody uses the one it replaces."""
        lm = self._find(key)
        if lm is not None:
            return lm
        if self.preloaded:
            raise InputError(f"This deployment loaded its models at start-up and offers only "
                             f"{', '.join(self.names())}; pick one of them.")
        busy = lambda: [k for k in self.models if self.users.get(k)]  # noqa: E731
        if busy() and not self.changed.wait_for(lambda: not busy() or self._find(key) is not None,
                                                 timeout=self.swap_wait_s):
            current = busy()[0][0]
            raise InputError(f"Other visitors are decoding with {current} right now; it is swapped for "
                             f"{key[0]} once they finish. Try again in a minute, or pick {current}.")
        lm = self._find(key)  # another visitor may have loaded it while this one waited
        if lm is not None:
            return lm
        for old in self.models.values():  # free the old weights (and stop its engine) before loading
            engine = self.engines.pop(id(old), None)
            if engine is not None:
                engine.close()
        self.models.clear()
        lm = load_model(key[0], quantize=key[1])
        warm_up(lm)
        self.models[key] = lm
        self.changed.notify_all()
        return lm


def decoding_engine(models: ModelHolder, lm: LoadedModel, rows: int, zero_gpu: bool) -> Engine | None:
    """Where a visitor's requests decode: the model's shared engine, or None (a private engine per
    call) on ZeroGPU, whose calls run in processes of their own and may batch only their own panels."""
    return None if zero_gpu else models.engine(lm, rows)


def quantize_option(four_bit) -> str | None:
    """The page's 4-bit checkbox as `load_model`'s ``quantize``."""
    return "4bit" if four_bit else None


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
    """What a first visitor runs without touching anything: the model's own pair and first example query
    (`ModelPreset.pair`, `.queries`: one it measurably follows), else the first ready-made pair and
    example query; and the model's recommended settings (a test keeps this run fluent)."""
    preset = model_preset((model_id or "").strip() or BUNDLED)
    pairs, queries = list(presets().pairs), model_queries(model_id)
    pair = preset.pair if preset and preset.pair else pairs[0] if pairs else None
    return pair, queries[0] if queries else "Describe a sunset over the sea.", recommended_settings(model_id)


def model_queries(model_id: str) -> list[str]:
    """The example queries the page offers with a model: its own first, then the shared ones."""
    preset = model_preset((model_id or "").strip() or BUNDLED)
    own = list(preset.queries) if preset else []
    return own + [q for q in example_queries() if q not in own]


def describe(lm: LoadedModel) -> str:
    ctx = lm.context_length
    return (f"Loaded: {lm.name} · device {lm.device} · dtype {lm.dtype}" + (" · 4-bit" if lm.quantize == "4bit" else "")
            + (f" · context {ctx} tokens" if ctx else ""))
