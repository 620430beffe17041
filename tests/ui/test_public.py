"""Public mode (Spaces, or PJUDGE_PUBLIC=1): only listed models, capped inputs, limited runs, and
refusals that reveal nothing about the server. Every malformed API value is a message in the page."""

import html
import json
import re
import time
import urllib.request

import pytest
from conftest import make_tiny_lm, serve_app
from gradio_client import Client
from test_app_api import MESSAGE, run_args

from pjudge_core.ui.access import Access
from pjudge_core.ui.deployment import Deployment

LISTED = Access(public=True, models=("tiny-test", "tiny-slow"), four_bit=("tiny-slow",), run_seconds=2.0)
SERVER_WORDS = ("folder", "exist", "config.json", "such", "etc", "hub", "gguf", "Traceback", "/")


@pytest.fixture(scope="module")
def public(tiny_lm):
    slow = make_tiny_lm(seed=1)
    slow.model.get_decoder().register_forward_pre_hook(lambda module, args: time.sleep(0.05))
    with serve_app({"tiny-test": tiny_lm, "tiny-slow": slow}, access=LISTED) as url:
        yield url, Client(url, verbose=False)


def messages(client, **kwargs):
    job = client.submit(*run_args(**kwargs), api_name="/run")
    job.result()
    return [html.unescape(str(o[MESSAGE])) for o in job.outputs() if "pj-msg" in str(o[MESSAGE])]


def reveals_nothing(message: str) -> bool:
    text = re.sub(r"<[^>]+>", "", message)
    refusal = text.split("(")[0] + text.split(")")[-1]  # naming the listed models is fine
    return not any(word in refusal for word in SERVER_WORDS)


@pytest.mark.parametrize("name", ["../../etc", "/definitely/missing", "/tmp", "some-org/some-7b-model",
                                  "/tmp/model.gguf", "bundled", ""])
def test_paths_and_unlisted_models_are_refused_with_one_sentence_that_reveals_nothing(public, name):
    _, client = public
    message = html.unescape(client.predict(name, False, api_name="/load"))
    assert "pj-msg-error" in message and "runs only its listed models (tiny-test, tiny-slow)" in message
    assert reveals_nothing(message), message
    run = messages(client, model=name)
    assert len(run) == 1 and "runs only its listed models" in run[0]


def test_four_bit_only_where_the_preset_allows_it(public):
    _, client = public
    assert "does not offer 4-bit" in client.predict("tiny-test", True, api_name="/load")


@pytest.mark.parametrize("kwargs, message", [
    (dict(query="x" * 2001), "The query is 2,001 characters; this public demo takes at most 2,000"),
    (dict(pref_a="y" * 601), "Preference A is 601 characters; this public demo takes at most 600"),
    (dict(max_new=300), "at most 256 new tokens"),
])
def test_oversize_inputs_are_refused(public, kwargs, message):
    _, client = public
    assert any(message in m for m in messages(client, **kwargs))


def test_a_run_stops_at_the_time_limit_and_frees_the_model(public):
    _, client = public
    started = time.perf_counter()
    found = messages(client, model="tiny-slow", max_new=256, methods=["persona-judge", "direct", "fusion"])
    assert any("Stopped after 2 s" in m for m in found), found
    assert time.perf_counter() - started < 20
    assert any("pj-msg-ok" in m for m in messages(client, model="tiny-test", max_new=16))


def test_the_page_states_the_limits(public):
    url, _ = public
    config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
    text = json.dumps(config)
    assert "Public demo" in text and "2,000 characters" in text and "256 new tokens" in text


def test_public_mode_is_switched_on_by_spaces_or_the_environment():
    assert not Deployment.from_env({}).access.public
    spaces = Deployment.from_env({"SPACE_ID": "someone/persona-judge", "ACCELERATOR": "t4-small"}).access
    assert spaces.public and "Qwen/Qwen2.5-1.5B-Instruct" in spaces.models
    assert "Qwen/Qwen2.5-7B-Instruct" not in spaces.models and "Qwen/Qwen2.5-1.5B-Instruct" in spaces.four_bit
    listed = Deployment.from_env({"PJUDGE_PUBLIC": "1", "PJUDGE_PUBLIC_MODELS": "a/b, c/d"}).access
    assert listed.public and listed.models == ("a/b", "c/d")
    assert Access().notice() == "" and "Public demo" in listed.notice()


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed="abc"), "Seed must be a number; got 'abc'"),
    (dict(max_new="many"), "Max new tokens must be a number; got 'many'"),
    (dict(max_new=4), None),  # below the slider's minimum but a valid setting: it runs
    (dict(top_p=7), "Top-p must be in (0, 1]"),
    (dict(roles="sideways"), "Roles must be 'alternate' or 'fixed'"),
    (dict(methods=["nonsense"]), "Unknown method 'nonsense'"),
    (dict(methods="direct"), None),  # one method as a plain string is fine
    (dict(n="two"), "The number of personas must be a number"),
    (dict(alpha="much", methods=["fusion"]), "Fusion α must be a number"),
])
def test_malformed_api_values_are_a_message_in_the_page(public, kwargs, message):
    _, client = public
    found = messages(client, **kwargs)
    if message is None:
        assert any("pj-msg-ok" in m for m in found), found
    else:
        assert any(message in m and "pj-msg-error" in m for m in found), found


def test_capacity_takes_malformed_and_oversize_numbers_as_messages(public):
    _, client = public
    assert "The number of pairs must be a number" in html.unescape(client.predict("tiny-test", False, "lots",
                                                                                    api_name="/capacity"))
    assert "at most 100 pairs" in client.predict("tiny-test", False, 150, api_name="/capacity")
