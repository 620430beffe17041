"""What a visitor may do: everything on your own machine, less on a public deployment.

A deployment is public when its environment says so (`deployment.Deployment.from_env`). Then:
  * the model is one of an allow-list (`models`: the presets offered on the deployment's hardware,
    or the ids it lists). Free text, local paths and ``.gguf`` files are refused with one sentence
    that says nothing about the server (no "no such folder", no "exists but ...");
  * 4-bit only for the models in `four_bit`;
  * caps on the query and preference lengths (characters), on new tokens and on the pairs the
    judge-capacity panel scores, stated in the page;
  * each run stops after `run_seconds`, and the queue holds at most `queue_size` waiting runs,
    so one visitor cannot hold the model for everybody else.
Outside public mode every check here passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..engine.prompting import characters
from ..engine.settings import DecodeSettings
from ..errors import InputError


@dataclass(frozen=True)
class HardwareLimits:
    max_new_tokens: int  # per answer
    concurrent_runs: int  # model events served at once
    engine_rows: int  # answers decoding at once in the shared engine (the others wait for a row)


# ZeroGPU lends each call its own GPU in its own process, so several visitors run at once there,
# each call batching its own panels. On a dedicated GPU or a CPU every visitor's panels join one
# batched engine: on 2 CPU cores eight visitors at once still see a first token within seconds
# (scripts/bench_visitors.py; docs/benchmarks.md, "Many visitors at once"); beyond 8 runs (16
# answers) a CPU only queues. A GPU takes many more rows for about the same time.
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
        length = characters(query)  # a conversation: its messages' contents together
        if length > self.max_query_chars:
            what = "query" if isinstance(query, str) else "conversation"
            raise InputError(f"The {what} is {length:,} characters; this public demo takes at most "
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
