"""The OpenAI-compatible server, through the `openai` client: answers equal `generate`'s token for
token, streamed or not; concurrent clients each get their lone run; a disconnect cancels only that
request; every bad input is OpenAI's error shape with one sentence."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn
from conftest import free_port

from pjudge_core import METHODS, DecodeSettings, RunSpec, generate
from pjudge_core.server.app import build_app
from pjudge_core.ui.access import Access

PREFS = ["Be brief and plain.", "Be vivid and poetic."]
CHAT = [{"role": "system", "content": "You answer in one line."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a story"}]


@contextlib.contextmanager
def serving(lm, **build):
    """The server on a free port, in a thread of this process: (OpenAI client, base URL, the app)."""
    app = build_app(lm, names=("tiny",), **build)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0), url, app
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tiny_lm):
    with serving(tiny_lm, rows=8) as served:
        yield served


def ask(client, messages=CHAT, personas=PREFS, **kw):
    extra = {"personas": personas, **kw.pop("extra_body", {})}
    return client.chat.completions.create(model="tiny", messages=messages, extra_body=extra, **kw)


def lone(lm, spec="persona-judge", messages=CHAT, personas=PREFS, **settings):
    """The same run decoded alone by the library: `generate` for a method, the run spec's own run otherwise."""
    if spec in METHODS:
        return generate(lm, spec, messages, personas, DecodeSettings(**settings))
    return RunSpec.parse(spec).run(lm, messages, personas, DecodeSettings(**settings))


def streamed(client, **kw):
    """(text, finish_reason, the last chunk's pjudge figures, usage, steps) of a streamed answer."""
    text, finish, figures, usage, steps = "", None, None, None, []
    for chunk in ask(client, stream=True, stream_options={"include_usage": True}, **kw):
        extra = chunk.model_extra.get("pjudge") or {}
        steps += extra.get("steps", [])
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                finish, figures = choice.finish_reason, extra
    return text, finish, figures, usage, steps


def test_the_model_list_names_the_served_model(server):
    client, _, _ = server
    assert [m.id for m in client.models.list()] == ["tiny"]  # the name it was served as (its own, tiny-llama, works too)
    assert client.models.retrieve("tiny-llama").id == "tiny"


@pytest.mark.parametrize("spec", ["persona-judge", "direct", "fusion(alpha=0.5)", "direct[B]"])
def test_an_answer_equals_generate_token_for_token(server, tiny_lm, spec):
    client, _, _ = server
    answer = ask(client, max_tokens=24, seed=5, extra_body={"spec": spec, "return_steps": True})
    alone = lone(tiny_lm, spec, max_new_tokens=24, seed=5)
    extra = answer.model_extra["pjudge"]
    assert [s["token_id"] for s in extra["steps"]] == alone.token_ids
    assert answer.choices[0].message.content == alone.text
    assert answer.choices[0].finish_reason == ("length" if alone.stats["stopped_by"] == "max_new_tokens" else "stop")
    assert answer.usage.completion_tokens == len(alone.token_ids)
    assert answer.usage.prompt_tokens == sum(alone.stats["prompt_tokens"])
    assert extra["seed"] == 5 and extra["stats"]["forward_passes"] == alone.stats["forward_passes"]
    if spec == "persona-judge":
        assert extra["stats"]["acceptance_rate_by_drafter"] == alone.stats["acceptance_rate_by_drafter"]
        assert {s["decision"] for s in extra["steps"]} <= {"accepted", "resampled", "bonus"}
        assert all(s["p"] is not None for s in extra["steps"])


def test_a_streamed_answer_equals_the_same_run_unstreamed(server, tiny_lm):
    client, _, _ = server
    text, finish, figures, usage, steps = streamed(client, max_tokens=30, seed=2, extra_body={"return_steps": True})
    alone = lone(tiny_lm, max_new_tokens=30, seed=2)
    assert text == alone.text and [s["token_id"] for s in steps] == alone.token_ids
    assert finish == "length" and figures["stats"]["acceptance_rate"] == alone.stats["acceptance_rate"]
    assert usage.completion_tokens == 30


def test_the_answer_ends_before_a_stop_string_streamed_or_not(server, tiny_lm):
    client, _, _ = server
    full = lone(tiny_lm, max_new_tokens=40, seed=7)
    stop = next(s.text for s in full.steps[5:] if s.text.strip() and full.text.find(s.text) > 0)
    alone = lone(tiny_lm, max_new_tokens=40, seed=7, stop=(stop,))
    answer = ask(client, max_tokens=40, seed=7, stop=stop)
    text, finish, figures, _, _ = streamed(client, max_tokens=40, seed=7, stop=[stop])
    assert answer.choices[0].message.content == text == alone.text == full.text[:full.text.find(stop)]
    assert answer.choices[0].finish_reason == finish == "stop"
    assert figures["stats"]["stop"]["string"] == stop


def test_eight_clients_at_once_each_get_their_lone_run(server, tiny_lm):
    client, _, _ = server
    runs = [dict(spec=spec, seed=seed, max_tokens=20 + 3 * seed, stream=seed % 2 == 1)
            for seed, spec in enumerate(["persona-judge", "direct", "fusion", "persona-judge(lam=2)"] * 2)]

    def one(run):
        kw = dict(max_tokens=run["max_tokens"], seed=run["seed"], extra_body={"spec": run["spec"]})
        return streamed(client, **kw)[0] if run["stream"] else ask(client, **kw).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(one, runs))
    for run, text in zip(runs, texts):
        assert text == lone(tiny_lm, run["spec"], max_new_tokens=run["max_tokens"], seed=run["seed"]).text, run


def test_a_client_that_disconnects_cancels_its_rows_and_no_others(server, tiny_lm):
    client, url, app = server
    service = app.state.service
    long = lone(tiny_lm, max_new_tokens=300, seed=0)
    assert long.stats["stopped_by"] == "max_new_tokens"  # it would run for 300 tokens
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(lambda: ask(client, max_tokens=60, seed=1).choices[0].message.content)
        with httpx.stream("POST", f"{url}/chat/completions", timeout=30,
                          json={"messages": CHAT, "personas": PREFS, "max_tokens": 300, "seed": 0,
                                "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # the first chunk: the run started
            cancelled = next(job for job in service.active if job.trace.record["seed"] == 0)
        deadline = time.monotonic() + 10
        while cancelled.state != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cancelled.state == "cancelled" and len(cancelled.steps) < 300 and cancelled.rows == []
        assert other.result(30) == lone(tiny_lm, max_new_tokens=60, seed=1).text
    assert cancelled not in service.active


def raw(url, content: bytes, **headers):
    return httpx.post(f"{url}/chat/completions", content=content, headers={"content-type": "application/json",
                                                                           **headers}, timeout=30)


@pytest.mark.parametrize("kw, status, match", [
    (dict(personas=[]), 400, "persona-judge needs at least two preferences"),
    (dict(extra_body={"spec": "beam-search"}), 400, "Unknown method 'beam-search'"),
    (dict(personas=["elementry", "Be kind and warm."]), 400, "Unknown persona preset 'elementry'"),
    (dict(max_tokens=0), 400, "max_tokens must be a whole number of at least 1"),
    (dict(messages=[{"role": "user", "content": "word " * 600}]), 400, "exceeds the model's context of 512 tokens"),
    (dict(model="some/other-model"), 404, "not served here"),
])
def test_bad_input_is_openais_error_shape_with_one_sentence(server, kw, status, match):
    client, _, _ = server
    model = kw.pop("model", None)
    with pytest.raises(openai.APIStatusError, match=match) as caught:
        if model:
            client.chat.completions.create(model=model, messages=CHAT)
        else:
            ask(client, **kw)
    assert caught.value.status_code == status
    assert set(caught.value.body) == {"message", "type", "param", "code"}


def test_malformed_json_an_oversized_body_and_unknown_paths_get_the_error_shape(tiny_lm):
    with serving(tiny_lm, rows=2, max_body=2000) as (_, url, _):
        bad = raw(url, b'{"messages": [')
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("The request body is not valid JSON")
        huge = raw(url, b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}')
        assert huge.status_code == 413 and "at most 2,000" in huge.json()["error"]["message"]
        lost = httpx.get(f"{url}/completions")
        assert lost.status_code == 404 and lost.json()["error"]["code"] == "not_found"


def test_a_public_server_applies_the_apps_limits(tiny_lm):
    access = Access(public=True, max_query_chars=100, max_new_tokens=16)
    with serving(tiny_lm, rows=2, access=access) as (client, _, _):
        with pytest.raises(openai.BadRequestError, match="The conversation is 118 characters; this public demo takes "
                                                         "at most 100"):
            ask(client, messages=[{"role": "user", "content": "x" * 118}])
        with pytest.raises(openai.BadRequestError, match="at most 16 new tokens"):
            ask(client, max_tokens=17)
        assert ask(client, max_tokens=16, seed=0).usage.completion_tokens <= 16


def test_the_serve_command_serves_a_model_folder_with_default_personas(tiny_folder, tiny_lm):
    import subprocess
    import sys

    from conftest import ROOT

    port = free_port()
    command = [sys.executable, "-m", "pjudge_core", "serve", "--model", tiny_folder, "--port", str(port), "--rows", "2",
               "--name", "tiny", "--persona", "concise", "--pref", "Write like a poet."]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 60
        while True:
            try:
                assert [m.id for m in client.models.list()] == ["tiny"]
                break
            except openai.APIConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.2)
        answer = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, seed=3)
        from pjudge_core.presets import persona_text

        # --pref texts come before --persona presets (`cli.args.preferences_from_args`)
        alone = lone(tiny_lm, personas=["Write like a poet.", persona_text("concise")], max_new_tokens=12, seed=3)
        assert answer.choices[0].message.content == alone.text
    finally:
        process.terminate()
        process.wait(20)


def test_the_serve_command_refuses_bad_defaults_before_loading(tiny_folder):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "pjudge_core", "serve", "--model", "no/such-model", "--persona",
                           "concise"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: persona-judge needs at least two preferences (A drafts, B judges); got 1."


def test_a_client_that_gives_up_on_an_unstreamed_answer_cancels_it(server, tiny_lm):
    _, url, app = server
    service = app.state.service
    with pytest.raises(httpx.ReadTimeout):  # a 300-token answer takes the tiny model over a second here
        httpx.post(f"{url}/chat/completions", timeout=0.3,
                   json={"messages": CHAT, "personas": PREFS, "max_tokens": 300, "seed": 0})
    deadline = time.monotonic() + 10
    while service.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not service.active  # cancelled and forgotten, well before its 300 tokens


def test_a_public_server_stops_a_run_after_its_seconds(tiny_lm):
    access = Access(public=True, run_seconds=0.2, max_new_tokens=300)
    with serving(tiny_lm, rows=2, access=access) as (client, _, app):
        with pytest.raises(openai.APIStatusError, match="stops each run after 0.2 s") as caught:
            ask(client, max_tokens=300, seed=0)
        assert caught.value.status_code == 408
        assert not app.state.service.active


def test_a_public_servers_full_queue_refuses_with_429_and_frees_once_done(tiny_lm):
    access = Access(public=True, queue_size=0, max_new_tokens=300)
    with serving(tiny_lm, rows=1, access=access) as (client, url, app):
        with httpx.stream("POST", f"{url}/chat/completions", timeout=30,
                          json={"messages": CHAT, "personas": PREFS, "max_tokens": 300, "seed": 0,
                                "stream": True}) as response:
            lines = response.iter_lines()  # kept: a dropped iterator closes the stream, which cancels the request
            next(lines)  # the first request holds the only row
            with pytest.raises(openai.RateLimitError, match="This public server is busy"):
                ask(client, max_tokens=5)
        deadline = time.monotonic() + 10
        while app.state.service.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ask(client, max_tokens=5, seed=1).usage.completion_tokens <= 5
