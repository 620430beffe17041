"""The app through its HTTP API (gradio_client), with a tiny model registered under "tiny-test"."""

import html
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, make_tiny_lm, serve_app
from gradio_client import Client

from pjudge_core import DecodeSettings, direct_prompt, generate, persona_judge
from pjudge_core.evaluation.meters import format_number, measure
from pjudge_core.evaluation.runs.compare import compare
from pjudge_core.evaluation.self_judge.fit import persona_fit
from pjudge_core.evaluation.self_judge.inference import infer_persona
from pjudge_core.ui import insight, lab, render

QUERY = "Describe a sunset."
PREF_A, PREF_B = "be vivid", "be creative"


@pytest.fixture(scope="module")
def client(tiny_lm):
    with serve_app({"tiny-test": tiny_lm, "tiny-long": make_tiny_lm(max_positions=4096)}) as url:
        yield Client(url, verbose=False)


PANEL = {slot: i for i, slot in enumerate(lab.slots())}  # the run's outputs: one HTML per panel, then ...
HEATMAP, PLOT, ACCEPTANCE, DOWNLOAD, MESSAGE, FIT_HEATMAP = range(len(lab.slots()), len(lab.slots()) + 6)


RUN_DEFAULTS = dict(  # the /run API's parameters, in order, with this file's test values
    model="tiny-test", four_bit=False, persona_a="vivid", pref_a=PREF_A, persona_b="creative", pref_b=PREF_B,
    query=QUERY, lam=4, roles="alternate", greedy=False, temperature=0.9, top_k=20, top_p=0.9, max_new=48, seed=7,
    methods=["persona-judge", "direct"], n=2, persona_c=None, pref_c="", persona_d=None, pref_d="", alpha=0.0,
    weights="", repetition_penalty=1.0, no_repeat=0,
)


def run_args(**changes):
    unknown = set(changes) - set(RUN_DEFAULTS)
    assert not unknown, f"not a /run parameter: {unknown}"
    return list({**RUN_DEFAULTS, **changes}.values())


def downloaded(value) -> dict:
    """The JSON record behind the download button (its update carries the file path)."""
    path = value["value"] if isinstance(value, dict) else value
    return json.loads(open(path, encoding="utf-8").read())


def run(client, **kwargs):
    job = client.submit(*run_args(**kwargs), api_name="/run")
    job.result()
    return job.outputs()


def test_importing_the_app_and_building_the_page_loads_no_model():
    """In a fresh process where any model load would raise: import app, build the page."""
    code = (
        "import transformers\n"
        "def refuse(*a, **k): raise SystemExit('a model was loaded at import')\n"
        "transformers.AutoModelForCausalLM.from_pretrained = refuse\n"
        "transformers.AutoTokenizer.from_pretrained = refuse\n"
        "import app\n"
        "app.build_demo()\n"
        "assert not app.MODELS.models and not app.MODELS.registered and not app.MODELS.preloaded\n"
        "print('ok')\n"
    )
    root = ROOT
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(root)))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/run", "/load", "/capacity"} <= set(endpoints)


def test_run_streams_both_panels_at_once_and_matches_the_engine(client, tiny_lm):
    outputs = run(client)
    pj_updates = [o[PANEL["persona-judge"]] for o in outputs if 'class="tok ' in str(o[PANEL["persona-judge"]])]
    direct_updates = [o[PANEL["direct"]] for o in outputs if 'class="tok ' in str(o[PANEL["direct"]])]
    assert len(pj_updates) >= 2 and len(direct_updates) >= 2, "both panels should stream in several updates"
    # the direct panel has tokens before Persona-judge has finished: they are interleaved, not one after the other
    first_direct = next(i for i, o in enumerate(outputs) if 'class="tok ' in str(o[PANEL["direct"]]))
    last_pj = max(i for i, o in enumerate(outputs) if 'class="tok ' in str(o[PANEL["persona-judge"]]))
    assert first_direct < last_pj
    final = outputs[-1]
    assert "pj-msg-ok" in final[MESSAGE]
    record = downloaded(final[DOWNLOAD])
    panels = {p["slot"]: p for p in record["panels"]}

    expected = persona_judge(tiny_lm, QUERY, PREF_A, PREF_B, max_new_tokens=48, seed=7)
    assert panels["persona-judge"]["token_ids"] == expected.token_ids
    assert panels["persona-judge"]["text"] == expected.text
    direct = direct_prompt(tiny_lm, QUERY, [PREF_A, PREF_B], max_new_tokens=48, seed=7)
    assert panels["direct"]["token_ids"] == direct.token_ids
    assert record["settings"]["seed"] == 7 and record["personas"]["A"] == {"name": "vivid", "text": PREF_A}
    # the last HTML of a panel holds every token and is final (no cursor)
    assert pj_updates[-1].count('class="tok ') == len(expected.steps) and 'data-state="done"' in pj_updates[-1]
    assert "pj-cursor" not in final[PANEL["direct"]]


def test_every_method_runs_with_three_personas(client, tiny_lm):
    outputs = run(client, methods=["persona-judge", "direct", "direct[C]", "fusion"], n=3, persona_c="humour",
                  pref_c="be funny", alpha=0.5, weights="2:1:1", max_new=20)
    final = outputs[-1]
    assert "pj-msg-ok" in final[MESSAGE], final[MESSAGE]
    record = downloaded(final[DOWNLOAD])
    panels = {p["slot"]: p for p in record["panels"]}
    assert set(panels) == {"persona-judge", "direct", "direct[C]", "fusion"}
    assert panels["fusion"]["spec"] == "fusion(alpha=0.5,weights=2:1:1)"
    settings = DecodeSettings(max_new_tokens=20, seed=7, repetition_penalty=1.0)
    fused = generate(tiny_lm, "fusion", QUERY, [PREF_A, PREF_B, "be funny"], settings, alpha=0.5, weights=[2, 1, 1])
    assert panels["fusion"]["token_ids"] == fused.token_ids
    assert {s["drafter"] for s in panels["persona-judge"]["steps"]} == {"A", "B", "C"}
    assert "data-persona-p" in final[PANEL["fusion"]] and "C alone" in final[PANEL["direct[C]"]]
    # panels that were not ticked are emptied when the run starts, so an earlier run's text never lingers
    assert outputs[0][PANEL["official"]] == "" or any(o[PANEL["official"]] == "" for o in outputs[:2])


@pytest.mark.parametrize("kwargs, message", [
    (dict(pref_a="   "), "Preference A is empty"),
    (dict(methods=[]), "Tick at least one method"),
    (dict(seed="abc"), "Seed must be a number"),
    (dict(weights="1:x", methods=["fusion"]), "Fusion weights are numbers"),
    (dict(n=3, methods=["persona-judge"]), "Preference C is empty"),
    (dict(n="three"), "The number of personas must be a number"),
    (dict(n=5), "Between 2 and 4 personas"),
    (dict(max_new=4000), "context of 512 tokens"),
    (dict(max_new=0), "Max new tokens must be at least 1"),
    (dict(methods=["beam-search"]), "Unknown method 'beam-search'"),
    (dict(alpha=-1, methods=["fusion"]), "α must be a finite number of at least 0"),
    (dict(methods=["direct[C]"]), "names persona C, but the run has 2 preferences"),
    (dict(max_new="many"), "Max new tokens must be a number"),
])
def test_bad_input_is_a_message_in_the_page(client, kwargs, message):
    outputs = run(client, **kwargs)
    messages = [html.unescape(str(o[MESSAGE])) for o in outputs]
    assert any(message in m and "pj-msg-error" in m for m in messages), messages


def test_load_error_is_readable(client):
    msg = client.predict("/definitely/not/a/model/folder", False, api_name="/load")
    assert "pj-msg-error" in msg and "Traceback" not in msg and "not/a/model" in msg


def test_load_registered(client):
    msg = client.predict("tiny-test", False, api_name="/load")
    assert "pj-msg-ok" in msg and "tiny-llama" in msg


def test_capacity_endpoint_answers(client):
    msg = client.predict("tiny-long", False, 10, api_name="/capacity")  # the pairs exceed 512 tokens
    assert "pj-msg-ok" in msg and "alignment accuracy" in msg and "10 student/PhD" in msg, msg


def test_default_model_offline_and_on_spaces():
    from pjudge_core.ui.deployment import Deployment, public_access
    from pjudge_core.ui.models import model_choices

    assert Deployment("cpu").default_model() == "bundled"
    assert [v for _, v in model_choices()][0] == "bundled"
    for hardware, default in (("zerogpu", "Qwen/Qwen2.5-1.5B-Instruct"), ("gpu", "Qwen/Qwen2.5-1.5B-Instruct"),
                              ("cpu", "bundled")):  # the bundled model is installed here; a Space: see test_hosting
        assert Deployment(hardware, public_access(hardware)).default_model() == default


# --------------------------------------------------------------------------- lab insight

def last_plot(outputs, index) -> dict:
    """The last plotly figure an output received (later updates may leave it unchanged)."""
    value = next(o[index] for o in reversed(outputs) if isinstance(o[index], dict) and "plot" in o[index])
    return json.loads(value["plot"])

def test_each_finished_answer_gets_its_persona_fit_in_its_panel_the_heatmap_and_the_record(client, tiny_lm):
    outputs = run(client, max_new=24)
    final = outputs[-1]
    record = downloaded(final[DOWNLOAD])
    plot = last_plot(outputs, FIT_HEATMAP)
    assert len(plot["data"]) == 2  # one subplot per finished panel
    assert record["fit"]["note"].startswith("Persona fit is the scoring model's own opinion")
    assert record["fit"]["model"] == "tiny-llama" and "under tiny-llama" in plot["layout"]["title"]["text"]
    for panel in record["panels"]:
        meters = measure(panel["text"])
        assert record["meters"]["panels"][panel["slot"]] == pytest.approx(meters)
        assert render.meters_html(meters) in final[PANEL[panel["slot"]]]  # next to its fit, same names
        assert "Persona fit under tiny-llama, nats/token:" in final[PANEL[panel["slot"]]]
        ids = [t for t in panel["token_ids"] if t not in tiny_lm.eos_token_ids]
        expected = persona_fit(tiny_lm, QUERY, ids, {"A": PREF_A, "B": PREF_B})
        fit = record["fit"]["panels"][panel["slot"]]
        assert fit["mean"] == pytest.approx(expected.mean, abs=1e-5)
        html_panel = final[PANEL[panel["slot"]]]
        assert f'data-label="A" data-fit="{expected.mean["A"]:.6f}"'[:-3] in html_panel
    # the fit arrives with the panel that finished, before the run's last update
    first_fit = next(i for i, o in enumerate(outputs) if "pj-fit" in str(o[PANEL["persona-judge"]]) or
                     "pj-fit" in str(o[PANEL["direct"]]))
    assert first_fit < len(outputs) - 1



def test_the_did_it_work_table_lines_up_each_answers_fit_and_meters_from_the_record(client):
    record = downloaded(run(client, max_new=16, methods=["persona-judge", "direct", "fusion"])[-1][DOWNLOAD])
    rows = re.findall(r'<tr data-slot="([^"]+)">(.*?)</tr>', render.answers_html(record))
    assert [slot for slot, _ in rows] == ["persona-judge", "direct", "fusion"]
    tops = {"A": [], "B": []}
    for slot, row in rows:
        mean = record["fit"]["panels"][slot]["mean"]
        cells = re.findall(r'<td(?: class="pj-top")? data-fit="([^"]+)"', row)
        assert [float(c) for c in cells] == pytest.approx([mean["A"], mean["B"]], abs=1e-6)
        meters = dict(re.findall(r'<td data-meter="([^"]+)">([^<]*)</td>', row))
        assert meters == {name: html.escape(format_number(name, value))
                          for name, value in record["meters"]["panels"][slot].items()}
        for label, cell in zip("AB", re.findall(r'<td([^>]*) data-fit=', row)):
            if "pj-top" in cell:
                tops[label].append(mean[label])
    for label in "AB":  # the highest fit under each persona is the one marked
        assert tops[label] == [max(record["fit"]["panels"][s]["mean"][label] for s, _ in rows)]


FRONT_ARGS = ["tiny-test", False, "vivid", PREF_A, "creative", PREF_B, QUERY, 4, "alternate", False, 0.9, 20, 0.9, 7,
              ["persona-judge", "direct"], 2, None, "", None, "", 0.0, "", 1.0, 0]


def test_front_samples_k_per_method_and_matches_compare(client, tiny_lm):
    job = client.submit(*FRONT_ARGS, 3, 8, "A", "B", api_name="/front")
    job.result()
    outputs = job.outputs()
    progress = [html.unescape(str(o[1])) for o in outputs if o[1]]
    assert any("1 of 6 answers" in m for m in progress) and any("6 of 6 answers" in m for m in progress)
    record = downloaded(outputs[-1][2])
    front = record["front"]
    expected = compare(tiny_lm, QUERY, {"A": PREF_A, "B": PREF_B}, "persona-judge,direct", samples=3,
                       settings=DecodeSettings(max_new_tokens=8, seed=7, repetition_penalty=1.0))
    assert [a["text"] for a in front["answers"]] == [a["text"] for a in expected["answers"]]
    assert front["by_spec"]["persona-judge"]["A"]["mean"] == pytest.approx(
        expected["by_spec"]["persona-judge"]["A"]["mean"], abs=1e-6)
    plot = last_plot(outputs, 0)
    assert {t["name"] for t in plot["data"]} >= {"persona-judge", "direct"}


def test_a_front_axis_can_be_a_meter(client):
    job = client.submit(*FRONT_ARGS, 2, 8, "words", "B", api_name="/front")
    job.result()
    plot = last_plot(job.outputs(), 0)
    assert plot["layout"]["xaxis"]["title"]["text"] == "words (words)"
    assert plot["layout"]["yaxis"]["title"]["text"].startswith("fit under B")


@pytest.mark.parametrize("changes, message", [
    (dict(samples=0), "Samples per method must be between 1 and 16"),
    (dict(x="C"), "Pick two different axes: personas among A, B"),
    (dict(tokens="many"), "Tokens per answer must be a number"),
])
def test_front_bad_input_is_a_message(client, changes, message):
    values = {"samples": 2, "tokens": 8, "x": "A", "y": "B", **changes}
    job = client.submit(*FRONT_ARGS, *values.values(), api_name="/front")
    job.result()
    messages = [html.unescape(str(o[1])) for o in job.outputs()]
    assert any(message in m and "pj-msg-error" in m for m in messages), messages


def test_infer_ranks_the_candidates_like_the_library(client, tiny_lm):
    user = insight.sample_user(3)
    table = {"headers": ["prompt", "chosen", "rejected"], "data": insight.pairs_rows(user["pairs"])}
    result_html = client.predict("tiny-test", False, table, "psoups", api_name="/infer")[0]
    expected = infer_persona(tiny_lm, user["pairs"], insight.candidates("psoups"))
    ranked = [html.unescape(text) for text in re.findall(r'class="pj-cand-text">([^<]*)', result_html)]
    assert ranked == [text for text, _ in expected.ranking]


def test_infer_with_malformed_pairs_is_a_message(client):
    table = {"headers": ["prompt", "chosen", "rejected"], "data": [["Hi?", "", "No."]]}
    message = html.unescape(client.predict("tiny-test", False, table, "psoups", api_name="/infer")[0])
    assert "pj-msg-error" in message and "Row 1 of the example pairs has an empty 'chosen' cell" in message


def test_infer_can_rank_a_candidate_the_model_writes(client):
    user = insight.sample_user(0)
    table = {"headers": ["prompt", "chosen", "rejected"], "data": insight.pairs_rows(user["pairs"])}
    result_html = client.predict("tiny-long", False, table, "psoups", True, api_name="/infer")[0]
    assert "pj-msg-error" not in result_html and result_html.count('data-rank="') == 7
    assert result_html.count("written by the model") == 1


def test_a_share_link_of_a_run_with_an_empty_seed_box_reproduces_its_tokens(client):
    """The seed box empty: every panel uses one drawn seed, which the record's form keeps; its share link
    restores the form, and running that form gives the same tokens."""
    from urllib.parse import parse_qs, urlsplit

    from pjudge_core.ui import share
    from pjudge_core.ui.access import Access

    record = downloaded(run(client, seed=None, max_new=16)[-1][DOWNLOAD])
    seed = record["form"]["fields"]["seed"]
    assert isinstance(seed, int) and record["settings"]["seed"] == seed
    assert {p["settings"]["seed"] for p in record["panels"]} == {seed}
    assert record["form"]["model"] == "tiny-test" and "on cpu (float32)" in record["form"]["ran_on"]
    url = share.link("http://127.0.0.1:7860/?__theme=dark", record["form"])
    restored = share.restore(Access(), {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()})
    v = restored.values
    again = downloaded(run(client, model=restored.model, four_bit=restored.four_bit, persona_a=v["persona_a"],
                           pref_a=v["pref_a"], persona_b=v["persona_b"], pref_b=v["pref_b"], query=v["query"],
                           lam=v["lam"], roles=v["roles"], greedy=v["greedy"], temperature=v["temperature"],
                           top_k=v["top_k"], top_p=v["top_p"], max_new=v["max_new_tokens"], seed=v["seed"],
                           methods=v["methods"], n=v["n_personas"], alpha=v["alpha"], weights=v["weights"],
                           repetition_penalty=v["repetition_penalty"], no_repeat=v["no_repeat_ngram_size"])[-1][DOWNLOAD])
    assert [p["token_ids"] for p in again["panels"]] == [p["token_ids"] for p in record["panels"]]
    assert again["form"]["fields"] == record["form"]["fields"]


def test_measure_on_this_query_says_per_persona_whether_the_model_follows_it(client, tiny_lm):
    from pjudge_core.ui import following

    text = html.unescape(client.predict(*FRONT_ARGS, api_name="/follows"))
    expected = following.measure(tiny_lm, QUERY, {"A": PREF_A, "B": PREF_B}, DecodeSettings(repetition_penalty=1.0))
    for sentence in following.measured_sentences(expected, "tiny-llama"):
        assert sentence in text
    assert "4 answers with no preference, 48 tokens each" in text
    bad = html.unescape(client.predict(*FRONT_ARGS[:6], "   ", *FRONT_ARGS[7:], api_name="/follows"))
    assert "The query is empty" in bad
