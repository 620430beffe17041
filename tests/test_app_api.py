"""The app through its HTTP API (gradio_client), with a tiny model registered under "tiny-test"."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_tiny_lm, serve_app
from gradio_client import Client

import app
from pjudge_core import direct_prompt, persona_judge

QUERY = "Describe a sunset."
PREF_A, PREF_B = "be vivid", "be creative"


@pytest.fixture(scope="module")
def client(tiny_lm):
    with serve_app({"tiny-test": tiny_lm, "tiny-long": make_tiny_lm(max_positions=4096)}) as url:
        yield Client(url, verbose=False)


def run_args(model="tiny-test", max_new=48, seed=7, query=QUERY, pref_a=PREF_A):
    # model, 4bit, persona A, pref A, persona B, pref B, query, λ, roles, greedy, T, top-k, top-p, max new, seed
    return [model, False, "vivid", pref_a, "creative", PREF_B, query, 4, "alternate", False, 0.9, 20, 0.9,
            max_new, seed]


def test_importing_the_app_and_building_the_page_loads_no_model():
    """In a fresh process where any model load would raise: import app, build the page."""
    code = (
        "import transformers\n"
        "def refuse(*a, **k): raise SystemExit('a model was loaded at import')\n"
        "transformers.AutoModelForCausalLM.from_pretrained = refuse\n"
        "transformers.AutoTokenizer.from_pretrained = refuse\n"
        "import app\n"
        "app.build_demo()\n"
        "assert app.MODELS.lm is None and not app.MODELS.registered\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(root)))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


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

    expected = persona_judge(tiny_lm, QUERY, PREF_A, PREF_B, max_new_tokens=48, seed=7)
    assert record["persona_judge"]["token_ids"] == expected.token_ids
    assert record["persona_judge"]["text"] == expected.text
    direct = direct_prompt(tiny_lm, QUERY, [PREF_A, PREF_B], max_new_tokens=48, seed=7)
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
    msg = client.predict("tiny-long", False, 10, api_name="/capacity")  # the pairs exceed 512 tokens
    assert "pj-msg-ok" in msg and "alignment accuracy" in msg and "10 student/PhD" in msg, msg


def test_default_model_offline_and_on_spaces(monkeypatch):
    monkeypatch.setattr(app, "ON_SPACES", False)
    assert app.default_model() == "bundled"
    monkeypatch.setattr(app, "ON_SPACES", True)
    assert app.default_model() == "Qwen/Qwen2.5-1.5B-Instruct"
    assert [v for _, v in app.model_choices()][0] == "bundled"
