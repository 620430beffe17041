"""Share links: a run's form and seed in the URL and back, validated like a form typed in; the
Compare tab's handlers for them (no server, no model)."""

import base64
import html
import json
import zlib
from urllib.parse import parse_qs, urlsplit

import gradio as gr
import pytest

from pjudge_core.errors import InputError
from pjudge_core.ui import lab, render, share
from pjudge_core.ui.access import Access
from pjudge_core.ui.deployment import Deployment
from pjudge_core.ui.form import FIELD_NAMES, read_form
from pjudge_core.ui.models import ModelHolder
from pjudge_core.ui.page import Page
from pjudge_core.ui.tabs.compare import CompareTab

FORM = dict(  # a form as the page hands it to the run (the sliders' floats, an empty seed box)
    persona_a="vivid", pref_a="Be vivid & use <b>colours</b>.", persona_b="concise", pref_b="Be short — très court.",
    query="Describe a sunset?\nIn two lines.", lam=4.0, roles="alternate", greedy=False, temperature=0.9, top_k=20.0,
    top_p=0.9, max_new_tokens=48.0, seed=None, methods=["persona-judge", "direct"], n_personas=2, persona_c=None,
    pref_c="", persona_d=None, pref_d="", alpha=0.0, weights="", repetition_penalty=1.1, no_repeat_ngram_size=0.0,
    reproducible=False)
THREE = {**FORM, "n_personas": 3, "persona_c": "humour", "pref_c": "Be funny.", "methods": ["fusion", "direct[C]"],
         "alpha": 0.5, "weights": "2:1:1", "roles": "fixed", "seed": 11, "reproducible": True}
PUBLIC = Access(public=True, models=("tiny-test",), four_bit=())
PAGE = "https://someone-pj-studio.hf.space/"


def link_params(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def shared_link(form=FORM, seed=1234, model="tiny-test", four_bit=False, location=PAGE) -> str:
    return share.link(location, share.run_form(model, four_bit, form, seed, "tiny-test on cpu (torch.float32)"))


def packed(form: dict) -> str:
    """A link's parameter made by hand (a tampered or foreign link)."""
    data = zlib.compress(json.dumps(form).encode())
    return "1." + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("form, seed", [(FORM, 1234), (THREE, 11), ({**FORM, "seed": ""}, 0)])
def test_a_link_gives_back_the_runs_form_with_the_seed_it_used(form, seed):
    url = shared_link(form, seed)
    assert url.startswith(PAGE + "?run=1.") and len(url) < 1500
    restored = share.restore(Access(), link_params(url))
    assert restored.model == "tiny-test" and restored.four_bit is False and restored.seed == seed
    assert "on cpu (torch.float32)" in restored.ran_on
    assert list(restored.values) == list(FIELD_NAMES)  # every field, in the page's order
    # the restored form is the run's form (the seed box replaced by the seed the run used)
    assert read_form(Access(), restored.values) == read_form(Access(), {**form, "seed": seed})
    assert restored.values["query"] == form["query"] and restored.values["pref_a"] == form["pref_a"]
    assert restored.values["methods"] == [m for m in lab.slots() if m in form["methods"]]  # in page order
    # numbers come back as the components hold them
    assert restored.values["lam"] == 4 and restored.values["max_new_tokens"] == 48
    # restoring the restored form's link changes nothing
    again = share.restore(Access(), link_params(share.link(PAGE, share.run_form(
        restored.model, restored.four_bit, restored.values, restored.seed))))
    assert again.values == restored.values


def test_personas_beyond_the_count_are_left_out_and_come_back_empty():
    form = {**FORM, "persona_c": "humour", "pref_c": "left over"}
    assert "pref_c" not in share.run_form("m", False, form, 1)["fields"]
    restored = share.restore(Access(), link_params(shared_link(form)))
    assert restored.values["pref_c"] == "" and restored.values["persona_c"] is None
    three = share.restore(Access(), link_params(shared_link(THREE, 11)))
    assert three.values["n_personas"] == 3 and three.values["pref_c"] == "Be funny."
    assert (three.values["roles"], three.values["alpha"], three.values["weights"]) == ("fixed", 0.5, "2:1:1")


def test_the_link_is_made_on_the_address_the_browser_shows():
    behind_proxy = "https://someone-pj-studio.hf.space/?__sign=eyJhbGciOi.secret&__theme=dark&run=1.old#top"
    url = shared_link(location=behind_proxy)
    assert url.startswith(PAGE + "?run=1.") and "__sign" not in url and "secret" not in url and "old" not in url
    assert shared_link(location="http://127.0.0.1:7860").startswith("http://127.0.0.1:7860/?run=")
    assert shared_link(location="https://example.org/apps/pj/").startswith("https://example.org/apps/pj/?run=")
    for bad in ("", "javascript:alert(1)", "file:///etc/passwd", None):
        with pytest.raises(InputError, match="address could not be read"):
            shared_link(location=bad)


def test_a_link_needs_a_run_and_fits_in_a_url():
    for record_form in (None, {}, {"fields": None}):
        with pytest.raises(InputError, match="Run first"):
            share.link(PAGE, record_form)
    noise = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(6000))  # does not compress
    with pytest.raises(InputError, match="too long for a link"):
        shared_link({**FORM, "query": noise})


def test_no_link_in_the_address_is_no_form():
    assert share.restore(Access(), {}) is None and share.restore(Access(), {"__theme": "dark"}) is None


# --------------------------------------------------------------------------- validated like any input

def test_on_a_public_demo_the_allow_list_and_the_limits_apply_with_the_apps_sentences():
    assert share.restore(PUBLIC, link_params(shared_link())).model == "tiny-test"
    with pytest.raises(InputError) as refused:
        PUBLIC.check_model("/some/local/folder", False)
    with pytest.raises(InputError) as linked:
        share.restore(PUBLIC, link_params(shared_link(model="/some/local/folder")))
    assert str(linked.value) == str(refused.value)
    with pytest.raises(InputError, match="does not offer 4-bit"):
        share.restore(PUBLIC, link_params(shared_link(four_bit=True)))
    long = {**FORM, "query": "x" * 2001}
    with pytest.raises(InputError) as typed:
        read_form(PUBLIC, long)
    with pytest.raises(InputError) as linked:
        share.restore(PUBLIC, link_params(shared_link(long)))
    assert str(linked.value) == str(typed.value) and "2,001 characters" in str(typed.value)
    with pytest.raises(InputError, match="at most 256 new tokens"):
        share.restore(PUBLIC, link_params(shared_link({**FORM, "max_new_tokens": 400})))


@pytest.mark.parametrize("changes, message", [
    (dict(temperature="hot"), "Temperature must be a number; got 'hot'."),
    (dict(methods=["beam-search"]), "Unknown method 'beam-search'"),
    (dict(methods=["direct[C]"]), "names persona C"),
    (dict(roles="sideways"), "Roles must be 'alternate' or 'fixed'"),
    (dict(n_personas=7), "Between 2 and 4 personas"),
])
def test_bad_values_in_a_link_get_the_forms_own_sentence(changes, message):
    with pytest.raises(InputError, match=message):
        share.restore(Access(), link_params(shared_link({**FORM, **changes})))


def test_an_unknown_persona_name_is_dropped_its_text_kept():
    restored = share.restore(Access(), link_params(shared_link({**FORM, "persona_a": "<img src=x>"})))
    assert restored.values["persona_a"] is None and restored.values["pref_a"] == FORM["pref_a"]


GOOD = share.run_form("tiny-test", False, FORM, 5)


@pytest.mark.parametrize("value", [
    "", "1", "1.", "1.!!!", "1.abc", "x.abcd", "1." + "A" * 9000, "1.eJzLSM3JyQcABiwCFQ",  # "hello", not JSON
    packed([1, 2]), packed({"fields": "query"}), packed({**GOOD, "fields": {**GOOD["fields"], "evil": 1}}),
    packed({**GOOD, "fields": {k: v for k, v in GOOD["fields"].items() if k != "query"}}),
    packed({**GOOD, "fields": {**GOOD["fields"], "query": ["a"]}}),
    packed({**GOOD, "fields": {**GOOD["fields"], "methods": "direct"}}),
    packed({**GOOD, "fields": {**GOOD["fields"], "lam": {"x": 1}}}), packed({**GOOD, "model": 3}),
    packed({**GOOD, "four_bit": "yes"}),
    shared_link()[len(PAGE) + 5:][:-9],  # cut off when copied
    "1." + base64.urlsafe_b64encode(zlib.compress(b"[" * 10**6)).decode().rstrip("="),  # inflates to 1 MB
])
def test_a_damaged_or_tampered_link_is_one_sentence(value):
    with pytest.raises(InputError) as refused:
        share.restore(Access(), {"run": value})
    assert str(refused.value) == share.DAMAGED


def test_a_link_of_another_format_says_so():
    with pytest.raises(InputError) as refused:
        share.restore(Access(), {"run": "2.abcd"})
    assert str(refused.value) == share.OTHER_VERSION


# --------------------------------------------------------------------------- the Compare tab's handlers

@pytest.fixture(scope="module")
def tab():
    """The Compare tab's layout, built in a page of its own (its handlers need no server)."""
    def build(access):
        with gr.Blocks():
            page = Page(Deployment("cpu", access), ModelHolder())
            compare = CompareTab(page)
            compare.build()
        return compare
    return build


def test_the_share_handler_makes_the_link_of_the_last_run(tab):
    compare = tab(Access())
    record = {"form": share.run_form("tiny-test", False, FORM, 987)}
    box, message = compare.share_link(record, PAGE + "?__sign=x")
    assert box["visible"] and box["value"].startswith(PAGE + "?run=1.") and "__sign" not in box["value"]
    assert "pj-msg-ok" in message and "seed (987)" in message and "same model, dtype and device" in message
    box, message = compare.share_link(None, PAGE)
    assert box["visible"] is False and "pj-msg-error" in message and "Run first" in message
    assert compare.share_ready(record)[0]["interactive"] and not compare.share_ready(None)[0]["interactive"]


def test_opening_a_link_fills_the_form_in_and_says_what_reproduces(tab):
    compare = tab(Access())
    outputs = compare.restored(link_params(shared_link(THREE, 11)))
    components = compare.restore_outputs()
    assert len(outputs) == len(components)
    by = dict(zip(components, outputs))
    form = compare.form
    assert by[form["query"]] == THREE["query"] and by[form["pref_c"]] == "Be funny." and by[form["seed"]] == 11
    assert by[form["persona_a"]] == "vivid" and by[form["n_personas"]] == 3 and by[compare.model] == "tiny-test"
    assert by[form["methods"]]["value"] == ["direct[C]", "fusion"]
    assert ("C alone", "direct[C]") in [tuple(c) for c in by[form["methods"]]["choices"]]
    assert by[compare.col_c]["visible"] and not by[compare.col_d]["visible"] and by[compare.more_personas]["open"]
    note = html.unescape(by[compare.run_msg])
    assert "seed 11" in note and "same model, dtype and device" in note and "tiny-test on cpu" in note


def test_a_refused_link_fills_nothing_in_and_gets_the_apps_sentence(tab):
    compare = tab(PUBLIC)
    for params, message in [
        (link_params(shared_link(model="bundled")), "runs only its listed models (tiny-test)"),
        (link_params(shared_link({**FORM, "pref_b": "y" * 601})), "Preference B is 601 characters"),
        ({"run": "1.garbage"}, share.DAMAGED),
    ]:
        *fields, note = compare.restored(params)
        assert all(isinstance(value, type(gr.skip())) and value == gr.skip() for value in fields)
        assert note == render.message_html(message, "error") or message in html.unescape(note)
    assert all(value == gr.skip() for value in compare.restored({}))  # an address without a link
