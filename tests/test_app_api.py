"""The app through its HTTP API (gradio_client), with a tiny model registered under "tiny-test"."""

import json
import socket

import pytest

from pjudge_core import persona_judge, direct_prompt

QUERY = "Describe a sunset."
PREF_A, PREF_B = "be vivid", "be creative"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tiny_lm):
    import app
    from gradio_client import Client

    app.register_model("tiny-test", tiny_lm)
    demo = app.build_demo()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def run_args(model="tiny-test", max_new=48, seed=7, query=QUERY, pref_a=PREF_A):
    # model, 4bit, persona A, pref A, persona B, pref B, query, λ, roles, greedy, T, top-k, top-p, max new, seed
    return [model, False, "vivid", pref_a, "creative", PREF_B, query, 4, "alternate", False, 0.9, 20, 0.9,
            max_new, seed]


def test_import_loads_nothing():
    import app

    assert app.MODELS.lm is None or app.MODELS.key[0] in app.MODELS.registered


def test_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/run", "/load", "/capacity"} <= set(endpoints)


def test_run_streams_and_matches_engine(client, tiny_lm):
    job = client.submit(*run_args(), api_name="/run")
    updates = list(job)
    outputs = job.outputs()
    token_updates = [o for o in outputs if isinstance(o[0], str) and 'class="tok ' in o[0]]
    assert len(token_updates) >= 2, "Persona-judge tokens should stream in several updates"
    final = outputs[-1]
    assert "pj-msg-ok" in final[6]
    record = json.loads(open(final[5], encoding="utf-8").read())

    expected = persona_judge(tiny_lm, QUERY, PREF_A, PREF_B, max_new_tokens=48, lam=4, alternate=True,
                             temperature=0.9, top_k=20, top_p=0.9, seed=7)
    assert record["persona_judge"]["token_ids"] == expected.token_ids
    assert record["persona_judge"]["text"] == expected.text
    direct = direct_prompt(tiny_lm, QUERY, [PREF_A, PREF_B], max_new_tokens=48, temperature=0.9, top_k=20,
                           top_p=0.9, seed=7)
    assert record["direct"]["token_ids"] == direct.token_ids
    assert final[1] == direct.text
    # the last token HTML holds every token, and is final (no cursor)
    last_html = token_updates[-1][0]
    assert last_html.count('class="tok ') == len(expected.steps) and 'data-state="done"' in last_html
    assert len(updates) >= 3


def test_load_error_is_readable(client):
    msg = client.predict("/definitely/not/a/model/folder", False, api_name="/load")
    assert "pj-msg-error" in msg and "Traceback" not in msg and "not/a/model" in msg


def test_load_registered(client):
    msg = client.predict("tiny-test", False, api_name="/load")
    assert "pj-msg-ok" in msg and "tiny-llama" in msg


def test_input_error_shown_in_page(client):
    job = client.submit(*run_args(pref_a="   "), api_name="/run")
    job.result()
    outputs = job.outputs()
    assert any("Preference A is empty" in str(o[6]) for o in outputs)


def test_capacity_endpoint_answers(client):
    import app
    from conftest import make_tiny_lm

    app.register_model("tiny-long", make_tiny_lm(max_positions=4096))  # the pairs exceed 512 tokens
    msg = client.predict("tiny-long", False, 10, api_name="/capacity")
    assert "pj-msg" in msg and "Traceback" not in msg
    try:
        import pjudge_core.capacity  # noqa: F401  (built by another issue)
    except ImportError:
        assert "not available" in msg
    else:
        assert "pj-msg-ok" in msg and "alignment accuracy" in msg and "10 student/PhD" in msg, msg


def test_default_model_offline_and_on_spaces(monkeypatch):
    import app

    monkeypatch.setattr(app, "ON_SPACES", False)
    assert app.default_model() == "bundled"
    monkeypatch.setattr(app, "ON_SPACES", True)
    assert app.default_model() == "Qwen/Qwen2.5-1.5B-Instruct"
    assert [v for _, v in app.model_choices()][0] == "bundled"
