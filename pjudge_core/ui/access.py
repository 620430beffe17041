"""What a visitor may do: everything on your own machine, less on a public deployment.

Public mode is on when ``SPACE_ID`` is set (Hugging Face Spaces) or ``PJUDGE_PUBLIC=1``. Then:
  * the model is one of an allow-list: the presets marked ``"public": true`` in
    ``presets/models.json``, or the ids in ``$PJUDGE_PUBLIC_MODELS`` (comma-separated). Free
    text, local paths and ``.gguf`` files are refused with one sentence that says nothing about
    the server (no "no such folder", no "exists but ...");
  * 4-bit only for presets marked ``"four_bit": true``;
  * caps on the query and preference lengths (characters), on new tokens and on the pairs the
    judge-capacity panel scores, stated in the page;
  * each run stops after `run_seconds`, and the queue holds at most `queue_size` waiting runs,
    so one visitor cannot hold the model for everybody else.
Outside public mode every check here passes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..engine.settings import DecodeSettings
from ..errors import InputError
from ..presets import model_presets
from .hosting import available, detect_hardware


@dataclass(frozen=True)
class HardwareLimits:
    max_new_tokens: int  # per answer
    concurrent_runs: int  # model events served at once
    engine_rows: int  # answers decoding at once in the shared engine (the others wait for a row)


# ZeroGPU lends each call its own GPU in its own process, so several visitors run at once there,
# each call batching its own panels. On a dedicated GPU or a CPU every visitor's panels join one
# batched engine: measured on 2 CPU cores (scripts/bench_visitors.py, 64 tokens), one visitor
# alone finishes in 5.5 s, four at once in 11-15 s and eight in 16-23 s, each first token within
# about 3 s; beyond 8 runs (16 answers) a CPU only queues. A GPU takes many more rows for about the same time.
HARDWARE_LIMITS = {
    "zerogpu": HardwareLimits(max_new_tokens=512, concurrent_runs=4, engine_rows=16),
    "gpu": HardwareLimits(max_new_tokens=512, concurrent_runs=16, engine_rows=48),
    "cpu": HardwareLimits(max_new_tokens=256, concurrent_runs=8, engine_rows=16),  # 2 vCPU
}


@dataclass(frozen=True)
class Access:
    public: bool = False
    models: tuple[str, ...] = ()  # the allow-list (public mode)
    four_bit: tuple[str, ...] = ()  # models that may load in 4-bit (public mode)
    max_query_chars: int = 2000
    max_preference_chars: int = 600
    max_new_tokens: int = 256
    max_capacity_pairs: int = 100
    run_seconds: float = 120.0
    queue_size: int = 16
    concurrent_runs: int = 8  # runs, fronts, inferences served at once (Gradio's concurrency limit)
    engine_rows: int = 16  # answers decoding at once in the shared engine; more wait for a row

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, hardware: str | None = None) -> "Access":
        public = bool(environ.get("SPACE_ID")) or environ.get("PJUDGE_PUBLIC", "").lower() in ("1", "true", "yes")
        hardware = hardware or detect_hardware(environ)
        limits = HARDWARE_LIMITS[hardware]
        if not public:
            return cls(concurrent_runs=limits.concurrent_runs, engine_rows=limits.engine_rows)
        listed = [m.strip() for m in environ.get("PJUDGE_PUBLIC_MODELS", "").split(",") if m.strip()]
        presets = model_presets()
        models = tuple(listed or [m.id for m in presets if hardware in m.offered_on and available(m.id)])
        four_bit = tuple(m.id for m in presets if hardware in m.four_bit_on and m.id in models)
        return cls(public=True, models=models, four_bit=four_bit, max_new_tokens=limits.max_new_tokens,
                   concurrent_runs=limits.concurrent_runs, engine_rows=limits.engine_rows)

    # ------------------------------------------------------------------ checks
    def check_model(self, name: str | None, four_bit: bool) -> None:
        if not self.public:
            return
        if name not in self.models:
            raise InputError(f"This public demo runs only its listed models ({', '.join(self.models)}); "
                             "pick one from the list.")
        if four_bit and name not in self.four_bit:
            raise InputError("This public demo does not offer 4-bit loading for that model; untick 4-bit.")

    def check_run(self, query, preferences: Mapping[str, str], settings: DecodeSettings) -> None:
        if not self.public:
            return
        if isinstance(query, str) and len(query) > self.max_query_chars:
            raise InputError(f"The query is {len(query):,} characters; this public demo takes at most "
                             f"{self.max_query_chars:,}.")
        for label, text in preferences.items():
            if isinstance(text, str) and len(text) > self.max_preference_chars:
                raise InputError(f"Preference {label} is {len(text):,} characters; this public demo takes at most "
                                 f"{self.max_preference_chars:,}.")
        if settings.max_new_tokens > self.max_new_tokens:
            raise InputError(f"This public demo writes at most {self.max_new_tokens} new tokens per answer; "
                             f"lower max new tokens (asked: {settings.max_new_tokens}).")

    def check_capacity(self, pairs: int) -> None:
        if self.public and pairs > self.max_capacity_pairs:
            raise InputError(f"This public demo scores at most {self.max_capacity_pairs} pairs at a time.")

    @property
    def time_limit(self) -> float | None:
        return self.run_seconds if self.public else None

    def notice(self) -> str:
        """The limits, stated in the page (empty outside public mode)."""
        if not self.public:
            return ""
        return (f"Public demo: the listed models only; queries up to {self.max_query_chars:,} characters, "
                f"preferences up to {self.max_preference_chars:,}, up to {self.max_new_tokens} new tokens; "
                f"{self.concurrent_runs} visitors' runs at once ({self.engine_rows} answers decoding together), each "
                f"run stops after {self.run_seconds:g} s, and at most {self.queue_size} runs wait in the queue. Run it "
                "on your own machine for any model and no limits.")
