"""Stop answers after its session's run has ended, so that its "Stopped." is the last update."""

import inspect
import threading
import time
from types import SimpleNamespace

import gradio as gr
from gradio import utils

from pjudge_core.ui.stopping import Stoppable


def steps(n: "Unknown", delay=0.0, progress=object()):  # noqa: F821 (a hint only its module resolves)
    for i in range(n):
        time.sleep(delay)
        yield i


def test_the_wrapped_handler_yields_what_the_handler_yields_and_asks_gradio_for_the_request():
    run = Stoppable().wrap(steps)
    assert list(run(3, request=SimpleNamespace(session_hash="a"))) == [0, 1, 2]
    assert "request" in inspect.signature(run).parameters and "n" in inspect.signature(run).parameters
    assert utils.get_type_hints(run)["request"] is gr.Request  # how Gradio finds its special parameters
    # ... among the positional ones, inserting the request at its place: after a defaulted progress
    assert list(inspect.signature(run).parameters)[-1] == "request"
    assert list(run(2, 0.0, None, SimpleNamespace(session_hash="a"))) == [0, 1]


def test_stop_waits_until_the_sessions_run_has_closed():
    stoppable = Stoppable()
    user = SimpleNamespace(session_hash="a")
    run = stoppable.wrap(steps)(100, 0.01, request=user)
    next(run)  # running
    answered = []
    stopper = threading.Thread(target=lambda: answered.append(stoppable.stop(user)))
    stopper.start()
    time.sleep(0.2)
    assert not answered, "Stop answered while the run could still send an update"
    run.close()  # what Gradio's cancellation does to the generator
    stopper.join(2)
    assert answered and "Stopped." in answered[0]


def test_stop_answers_at_once_for_a_session_without_a_run_in_flight():
    stoppable = Stoppable()
    list(stoppable.wrap(steps)(2, request=SimpleNamespace(session_hash="a")))  # ended
    busy = stoppable.wrap(steps)(100, 0.01, request=SimpleNamespace(session_hash="b"))
    next(busy)  # another session's run does not hold this session's Stop
    started = time.perf_counter()
    assert "Stopped." in stoppable.stop(SimpleNamespace(session_hash="a"))
    assert time.perf_counter() - started < 1.0
    busy.close()
