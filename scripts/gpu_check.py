"""The device check: what this project does on a GPU, in one command of about 4 minutes, with no network.

    python scripts/gpu_check.py                      # on the first CUDA device; writes gpu_check.json
    python scripts/gpu_check.py --device cpu --quick # the reduced form the test suite runs

It prints each section as it finishes and writes them all as JSON (`--out`). A section that fails
records its error and the others still run. Sections:
  * environment: versions, the device, whether it has bfloat16 natively, its memory;
  * methods: every registered method's example specs decoded on the device in float32 and bfloat16
    (the tests' tiny model), each against its slow reference decoder, token for token;
  * batch_identity: mixed requests decoded together and alone (`check-batch`), per mode and dtype;
  * timing: models of the presets' shapes with random weights (no weights travel): per engine step
    with 1-64 Persona-judge requests, the forward's milliseconds by rows and width against the host's
    (everything else the step does); transformers' `generate` per token; and one Persona-judge
    panel's seconds per token, measured and at the assumed acceptance: what `zerogpu_token_s` in
    presets/models.json should say;
  * out_of_memory: a request too big for the device among others: it fails with one sentence, the
    others finish as alone, and a later request runs (on a CPU the fault is injected);
  * sliding_windows: tiny Gemma-2, Mistral and Qwen2 with an 8-token window, the engine's greedy
    tokens against `model.generate`'s.
Needs torch and transformers only (no bitsandbytes, gguf or spaces): the project itself travels.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, the package not installed

import torch  # noqa: E402
import transformers  # noqa: E402

from pjudge_core import DecodeSettings, LoadedModel, Request, generate, prompt_ids  # noqa: E402
from pjudge_core.bench.batch_check import check_batched, checked_specs, mixed_requests, persona_counts  # noqa: E402
from pjudge_core.bench.tiny import (  # noqa: E402
    PRESET_SHAPES,
    make_tiny_lm,
    make_tokenizer,
    make_windowed_lm,
    moved,
    preset_shaped,
)
from pjudge_core.engine.api import stream_job  # noqa: E402
from pjudge_core.engine.engine import Engine  # noqa: E402
from pjudge_core.engine.memory import kv_bytes_per_token  # noqa: E402
from pjudge_core.engine.methods import METHODS  # noqa: E402
from pjudge_core.engine.methods.persona_judge import forwards_per_token  # noqa: E402
from pjudge_core.engine.specs import RunSpec  # noqa: E402
from pjudge_core.errors import OutOfMemory  # noqa: E402

QUERY = "Describe a sunset over the sea in vivid detail."
PREFS = ["Be concise.", "Be imaginative and richly descriptive.", "Be funny.", "Explain it to a child."]


def synchronizer(device: str):
    """What waits for the device's queued work (timings on a GPU end there), or nothing on a CPU."""
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def environment(device: str) -> dict:
    """Versions, the device, and (the first section, so in a fresh process) how long the device's first
    tensor and first matmul take: the part of a ZeroGPU call's cold start that no start-up can warm."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "device": device}
    sync = synchronizer(device)
    started = time.perf_counter()
    x = torch.ones(64, 64, device=device)
    sync()
    first = time.perf_counter()
    (x @ x).sum().item()
    sync()
    info["cold_start_s"] = {"first_tensor": round(first - started, 3), "first_matmul": round(time.perf_counter() - first, 3)}
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        info.update(name=torch.cuda.get_device_name(), capability=".".join(map(str, torch.cuda.get_device_capability())),
                    bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
                    memory_gib={"free": round(free / 2 ** 30, 1), "total": round(total / 2 ** 30, 1)})
    return info


def dtypes(device: str) -> list[torch.dtype]:
    native = not device.startswith("cuda") or torch.cuda.is_bf16_supported(including_emulation=False)
    return [torch.float32] + ([torch.bfloat16] if native else [])


def methods(device: str, quick: bool) -> dict:
    """Every example spec, sampled and greedy, in each dtype: the engine's tokens against the reference's."""
    out = {}
    base = make_tiny_lm()
    for dtype in dtypes(device):
        lm = moved(base, device, dtype)
        rows = {}
        for spec in checked_specs():
            run = RunSpec.parse(spec)
            prefs = PREFS[:max(persona_counts(run))]
            for greedy in (False, True):
                settings = DecodeSettings(seed=3, max_new_tokens=12 if quick else 32, greedy=greedy)
                result = run.run(lm, QUERY, prefs, settings)
                want = METHODS[run.method].reference(lm, QUERY, run.preferences(prefs), run.settings(settings),
                                                     **run.method_options())
                rows[f"{spec}{' greedy' if greedy else ''}"] = {
                    "tokens": len(result.token_ids),
                    "equals_reference": [s.token_id for s in result.steps] == [t for t, _, _ in want],
                    "p_in_0_1": all(0 <= s.p <= 1 for s in result.steps)}
        out[str(dtype).removeprefix("torch.")] = {"runs": len(rows), "equal_to_reference": sum(
            r["equals_reference"] for r in rows.values()), "each": rows}
    return out


def batch_identity(device: str, quick: bool) -> dict:
    out = {}
    base = make_tiny_lm()
    for dtype in dtypes(device):
        report = check_batched(moved(base, device, dtype), mixed_requests(8 if quick else 48, seed=1,
                                                                          max_new_tokens=16 if quick else 32),
                               rows=8 if quick else 16)
        out[str(dtype).removeprefix("torch.")] = {"requests": report["requests"], **{
            mode: r["identical"] for mode, r in report["modes"].items()}}  # identical to their lone runs, per mode
    return out


class StepClock:
    """Times an engine's steps: each forward (synchronised, by rows and width) and the rest, the host's."""

    def __init__(self, engine: Engine, device: str):
        self.engine, self.sync = engine, synchronizer(device)
        self.forwards: dict[tuple[int, int], list[float]] = {}
        self.steps: list[tuple[float, float]] = []  # (step ms, of which forwards ms)
        forward = engine.runner.forward

        def timed(feeds):
            self.sync()
            started = time.perf_counter()
            out = forward(feeds)
            self.sync()
            ms = 1000 * (time.perf_counter() - started)
            self._in_step += ms
            self.forwards.setdefault((len(feeds), max(len(f.tokens) for f in feeds)), []).append(ms)
            return out
        engine.runner.forward = timed
        self._in_step = 0.0

    def run(self) -> None:
        while self.engine.busy:
            self._in_step = 0.0
            started = time.perf_counter()
            self.engine.step()
            self.sync()
            self.steps.append((1000 * (time.perf_counter() - started), self._in_step))


def timing(device: str, quick: bool, deadline: float) -> dict:
    """Per preset shape (random weights): engine steps with 1-64 Persona-judge requests, generate's ms per
    token, and a Persona-judge panel's seconds per token."""
    dtype = torch.bfloat16 if torch.bfloat16 in dtypes(device) and device.startswith("cuda") else torch.float32
    tokenizer = make_tokenizer()
    shapes = ["tiny"] if quick else list(PRESET_SHAPES)
    counts = (1, 4) if quick else (1, 8, 32, 64)
    tokens = 16 if quick else 48
    out = {"dtype": str(dtype).removeprefix("torch.")}
    for name in shapes:
        if time.monotonic() > deadline:
            out[name] = {"skipped": "out of time"}
            continue
        lm = moved(make_tiny_lm(), device, dtype) if name == "tiny" else preset_shaped(name, tokenizer, device, dtype)
        row = {"kv_bytes_per_token": kv_bytes_per_token(lm.model), "steps": {}}
        settings = DecodeSettings(seed=0, max_new_tokens=tokens)
        for n in counts:
            engine = Engine(lm, rows=n)
            clock = StepClock(engine, device)
            jobs = [engine.submit(Request("persona-judge", QUERY, PREFS[:2], settings.replace(seed=i),
                                          ignore_eos=True).job(lm)) for i in range(n)]
            clock.run()
            steady = clock.steps[1:]  # (the first step feeds the prompts)
            row["steps"][n] = {
                "step_ms": round(statistics.median(s for s, _ in steady), 3),
                "forward_ms": round(statistics.median(f for _, f in steady), 3),
                "host_ms": round(statistics.median(s - f for s, f in steady), 3),
                "forward_ms_by_rows_width": {f"{r}x{w}": round(statistics.median(v), 3)
                                             for (r, w), v in sorted(clock.forwards.items()) if w <= 8},
                "tokens_per_s": round(sum(len(j.result.token_ids) for j in jobs) / (sum(s for s, _ in clock.steps) / 1000), 1)}
            engine.close()
        lone = row["steps"][1]  # one request: each step is one of its forwards
        result = generate(lm, "persona-judge", QUERY, PREFS[:2], settings, ignore_eos=True)
        acceptance = result.stats.get("acceptance_rate") or 0.0
        ids = torch.tensor([prompt_ids(lm.tokenizer, QUERY, [PREFS[0]])], device=device)
        with torch.no_grad():
            lm.model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
            clock_sync = synchronizer(device)
            clock_sync()
            started = time.perf_counter()
            lm.model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
            clock_sync()
        generate_ms = 1000 * (time.perf_counter() - started) / tokens
        row.update(
            generate_ms_per_token=round(generate_ms, 3),
            persona_judge_measured={"s_per_token": round(result.stats["seconds"] / len(result.token_ids), 4),
                                    "acceptance": round(acceptance, 3)},
            # A lone panel: λ + 1 steps a block, each one step of one request, at the assumed acceptance.
            zerogpu_token_s=round(lone["step_ms"] * forwards_per_token(settings) / 1000, 4),
            panel_vs_generate=round(lone["step_ms"] * forwards_per_token(settings) / generate_ms, 2))
        out[name] = row
        del lm
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def out_of_memory(device: str, quick: bool) -> dict:
    """A request whose KV cache cannot be allocated, among three that can: it fails with the sentence; the
    others finish with their lone runs' tokens; a request submitted afterwards runs. On a CUDA device the
    allocation really fails (a pool of about a terabyte); elsewhere it is injected."""
    lm = moved(make_tiny_lm(max_positions=4 * 10 ** 9), device, torch.float32)  # (a context the huge one fits)
    settings = DecodeSettings(max_new_tokens=12 if quick else 24)

    def request(seed, tokens=None):
        return Request("persona-judge", QUERY, PREFS[:2], settings.replace(seed=seed, max_new_tokens=tokens or
                                                                          settings.max_new_tokens), ignore_eos=True)

    def lone(seed):
        return stream_job(lm, request(seed).job(lm)).run().token_ids

    engine = Engine(lm, rows=8, kv_budget=2 ** 50).start()
    real = device.startswith("cuda")
    try:
        jobs = [engine.submit(request(seed).job(lm)) for seed in (1, 2, 3)]
        grow = engine.pool._grow
        if not real:
            def grow_or_fail(slots=None, capacity=None):
                if capacity and capacity > 10 ** 6:
                    raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")
                return grow(slots=slots, capacity=capacity)
            engine.pool._grow = grow_or_fail
        huge = engine.submit(request(4, tokens=2 * 10 ** 9).job(lm))  # 2e9 tokens × 2 rows: ~1 TB of KV
        try:
            huge.wait(timeout=120)
            failed = "no: it ran"
        except OutOfMemory as exc:
            failed = str(exc)
        for job in jobs:
            job.wait(timeout=120)
        engine.pool._grow = grow
        later = engine.submit(request(5).job(lm))
        later.wait(timeout=120)
        return {"fault": "real" if real else "injected", "failed_with": failed,
                "others_equal_their_lone_runs": all(j.result.token_ids == lone(s) for j, s in zip(jobs, (1, 2, 3))),
                "later_request_equals_its_lone_run": later.result.token_ids == lone(5),
                "engine_thread_alive": engine._thread.is_alive()}
    finally:
        engine.close()


def sliding_windows(device: str, quick: bool) -> dict:
    out = {}
    query = "Describe a sunset over the sea in vivid detail, and be imaginative and creative about it."
    for kind in ("gemma2", "mistral", "qwen2-sliding"):
        base = make_windowed_lm(kind)
        lm = LoadedModel(model=base.model.to(device), tokenizer=base.tokenizer, name=base.name, device=device)
        settings = DecodeSettings(greedy=True, max_new_tokens=24 if quick else 64)
        ours = generate(lm, "direct", query, [PREFS[1]], settings, ignore_eos=True).token_ids
        ids = torch.tensor([prompt_ids(lm.tokenizer, query, [PREFS[1]])], device=device)
        with torch.no_grad():
            theirs = lm.model.generate(ids, max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.max_new_tokens,
                                       do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()
        out[kind] = {"equal_to_generate": ours == theirs, "tokens": len(ours)}
    return out


SECTIONS = ("environment", "methods", "batch_identity", "timing", "out_of_memory", "sliding_windows")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--quick", action="store_true", help="the reduced form (tiny model only): the tests' CPU run")
    parser.add_argument("--budget-s", type=float, default=220.0, help="stop starting new model shapes after this")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="these sections only")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget_s
    report: dict = {}
    for name in args.only or SECTIONS:
        t = time.monotonic()
        try:
            if name == "environment":
                report[name] = environment(args.device)
            elif name == "timing":
                report[name] = timing(args.device, args.quick, deadline)
            else:
                report[name] = globals()[name](args.device, args.quick)
        except Exception as exc:  # a section's failure is its result; the others still run
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        report[name + "_s"] = round(time.monotonic() - t, 1)
        print(f"== {name} ({report[name + '_s']} s)\n{json.dumps(report[name], indent=1)[:4000]}", flush=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    report["total_s"] = round(time.monotonic() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"total {report['total_s']} s; written to {args.out}")
    return report


if __name__ == "__main__":
    main()
