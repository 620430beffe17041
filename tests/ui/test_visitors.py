"""Many visitors at once: their runs share one batched engine per model, over real HTTP (gradio_client
on loopback), with tiny models. Each visitor's panels equal a lone run of the engine with the same
seed; one visitor's Stop cancels only their rows; two models asked for at once both run; a model
swap waits for the visitors of the current model or is refused with a sentence."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import make_tiny_lm, serve_app
from gradio_client import Client
from test_app_api import DOWNLOAD, MESSAGE, PANEL, downloaded, run_args

from pjudge_core import DecodeSettings, InputError, RunSpec
from pjudge_core.ui.access import Access
from pjudge_core.ui.models import ModelHolder

VISITORS = 6
SPECS = ("persona-judge", "direct")


def expected(lm, seed: int, tokens: int, query="Describe a sunset.", prefs=("be vivid", "be creative")) -> dict:
    settings = DecodeSettings(max_new_tokens=tokens, seed=seed)
    return {slot: RunSpec.parse(slot).run(lm, query, list(prefs), settings).token_ids for slot in SPECS}


def panels_of(outputs) -> dict:
    record = downloaded(outputs[-1][DOWNLOAD])
    return {p["slot"]: p["token_ids"] for p in record["panels"]}


@pytest.fixture(scope="module")
def served():
    lms = {"tiny-a": make_tiny_lm(seed=1, max_positions=4096), "tiny-b": make_tiny_lm(seed=2)}
    holder = ModelHolder()
    with serve_app(lms, Access(concurrent_runs=VISITORS, engine_rows=16), holder=holder) as url:
        yield url, lms, holder


def test_visitors_pressing_run_together_each_get_their_lone_run(served):
    url, lms, holder = served
    clients = [Client(url, verbose=False) for _ in range(VISITORS)]
    jobs = [c.submit(*run_args(model="tiny-a", seed=100 + i, max_new=40, repetition_penalty=1.0), api_name="/run")
            for i, c in enumerate(clients)]
    started = time.monotonic()
    for job in jobs:
        job.result(timeout=240)
    assert time.monotonic() - started < 240
    engine = holder.engines[id(lms["tiny-a"])]
    assert engine.forwards > 0 and not engine.scheduler.running  # one shared engine decoded them all, and is idle
    for i, job in enumerate(jobs):
        outputs = job.outputs()
        assert "pj-msg-ok" in outputs[-1][MESSAGE]
        assert panels_of(outputs) == expected(lms["tiny-a"], 100 + i, 40)


def test_one_visitors_stop_ends_only_their_rows(served):
    url, lms, holder = served
    long_run = Client(url, verbose=False).submit(*run_args(model="tiny-a", seed=1, max_new=2048), api_name="/run")
    others = [Client(url, verbose=False).submit(*run_args(model="tiny-a", seed=200 + i, max_new=48), api_name="/run")
              for i in range(3)]
    deadline = time.monotonic() + 60
    while not any('class="tok ' in str(o[PANEL["direct"]]) for o in long_run.outputs()):
        assert time.monotonic() < deadline, "the long run never showed a token"
        time.sleep(0.05)
    long_run.cancel()
    for i, job in enumerate(others):
        job.result(timeout=240)
        assert panels_of(job.outputs()) == expected(lms["tiny-a"], 200 + i, 48)
    engine = holder.engines[id(lms["tiny-a"])]
    deadline = time.monotonic() + 30
    while engine.scheduler.running:  # the stopped run's rows leave at the engine's next step
        assert time.monotonic() < deadline, "the stopped rows kept decoding"
        time.sleep(0.05)
    assert engine.pool.used == 0
    assert long_run.status().code.name == "CANCELLED" or "pj-msg-ok" not in str(long_run.outputs()[-1][MESSAGE])


def test_two_models_asked_for_at_once_both_run(served):
    url, lms, holder = served
    jobs = {name: Client(url, verbose=False).submit(*run_args(model=name, seed=5, max_new=32), api_name="/run")
            for name in ("tiny-a", "tiny-b")}
    for name, job in jobs.items():
        job.result(timeout=240)
        assert panels_of(job.outputs()) == expected(lms[name], 5, 32)
    assert {id(lms["tiny-a"]), id(lms["tiny-b"])} <= set(holder.engines)  # an engine per model


def test_a_model_swap_waits_for_the_current_models_visitors_then_loads(monkeypatch):
    loads = []

    def fake_load(name, quantize=None):
        loads.append(name)
        return make_tiny_lm(seed=len(loads))

    monkeypatch.setattr("pjudge_core.ui.models.load_model", fake_load)
    holder = ModelHolder(swap_wait_s=5)
    with holder.use("model-x") as lm_x:
        swapped = []
        waiter = threading.Thread(target=lambda: swapped.append(holder.get("model-y")))
        waiter.start()
        time.sleep(0.3)
        assert loads == ["model-x"] and holder.loaded("model-x") is lm_x  # y waits: x is in use
    waiter.join(timeout=10)
    assert loads == ["model-x", "model-y"] and swapped and holder.loaded("model-x") is None


def test_a_model_swap_is_refused_with_a_sentence_while_visitors_keep_decoding(monkeypatch):
    monkeypatch.setattr("pjudge_core.ui.models.load_model", lambda name, quantize=None: make_tiny_lm())
    holder = ModelHolder(swap_wait_s=0.2)
    with holder.use("model-x") as lm_x:
        engine = holder.engine(lm_x)
        with pytest.raises(InputError, match="Other visitors are decoding with model-x"):
            holder.get("model-y")
        assert holder.loaded("model-x") is lm_x and engine.threaded  # nothing was broken
    holder.get("model-y")
    assert holder.loaded("model-x") is None
