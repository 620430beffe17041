"""Real-browser tests: Playwright (pip) driving Debian's /usr/bin/chromium against the app.

The page has five tabs (Compare, Did it work?, Infer a persona, Judge capacity, About); each test
goes to the tab of the feature it uses. The fast tests use tiny random models registered in the
app ("tiny-test", and "tiny-slow" whose forward sleeps so a run lasts long enough to watch it or
stop it). The slow test uses the bundled SmolLM2, measures the first tokens on screen and saves
screenshots of every tab at desktop and phone widths, light and dark, under artifacts/. A missing
chromium is a FAILURE with a clear message, never a skip.
"""

import json
import os
import time
from pathlib import Path

import pytest
from conftest import ROOT, make_tiny_lm, serve_app

import app
from pjudge_core.evaluation.meters import METERS

CHROMIUM = os.environ.get("PJUDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"

pytestmark = pytest.mark.browser
FORWARDS: list[float] = []  # forward passes of the "tiny-slow" model


@pytest.fixture(scope="module")
def server(tiny_lm):
    slow = make_tiny_lm(seed=1)

    def slow_forward(module, args):
        FORWARDS.append(time.perf_counter())
        time.sleep(0.03)

    # On the decoder stack: it runs in every forward (the CPU fast path projects its output itself).
    slow.model.get_decoder().register_forward_pre_hook(slow_forward)
    long = make_tiny_lm(max_positions=4096)  # judge capacity's pairs exceed 512 tokens
    with serve_app({"tiny-test": tiny_lm, "tiny-slow": slow, "tiny-long": long}, **app.launch_kwargs()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                    "(or set PJUDGE_CHROMIUM); browser tests must not be skipped.")
    from playwright.sync_api import sync_playwright  # only the browser tests need playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url, width=1400, height=1000, dark=False):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.goto(url + ("?__theme=dark" if dark else ""), wait_until="domcontentloaded")
    page.wait_for_selector("#run-btn", timeout=30_000)
    return page


TABS = {"Compare": "#tab-compare", "Did it work?": "#tab-insight", "Infer a persona": "#tab-infer",
        "Judge capacity": "#tab-capacity", "About": "#tab-about"}


def open_tab(page, name):
    """Click the tab `name` and wait for its content."""
    page.get_by_role("tab", name=name, exact=True).click()
    page.locator(TABS[name]).wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(200)


def download_record(page) -> dict:
    """The run's JSON download (its button is on Compare)."""
    open_tab(page, "Compare")
    with page.expect_download() as info:
        page.locator("#run-download").click()
    return json.loads(Path(info.value.path()).read_text(encoding="utf-8"))


def choose(page, elem_id, value, custom=False):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    if custom:
        box.press("Enter")
    else:
        page.get_by_role("option", name=value, exact=True).first.click()
    page.wait_for_timeout(200)


def open_parameters(page):
    number = page.locator("#max-new input[type=number]")
    if not number.is_visible():
        page.get_by_text("Decoding parameters").click()
        number.wait_for(state="visible")
        page.wait_for_timeout(500)  # let the accordion finish opening, or the value is reset


def set_slider(page, elem_id, n):
    """Type a value into a visible slider's (or number's) box."""
    number = page.locator(f"#{elem_id} input[type=number]")
    number.wait_for(state="visible")
    for _ in range(3):
        number.fill(str(n))
        number.press("Tab")  # a slider takes the typed number on blur
        page.wait_for_timeout(300)
        if number.input_value() == str(n):
            break
    assert number.input_value() == str(n)


def set_number(page, elem_id, n):
    """Set a field of the decoding parameters (opening them first)."""
    open_parameters(page)
    set_slider(page, elem_id, n)


def tick(page, label_part, on=True):
    box = page.locator("#methods label", has_text=label_part).first.locator("input")
    if box.is_checked() != on:
        box.click()
    page.wait_for_timeout(200)


def run(page):
    page.get_by_role("button", name="Run", exact=True).click()


def wait_done(page, timeout=60_000):
    page.wait_for_selector("#run-status .pj-msg-ok", timeout=timeout)
    # attached, not visible: a token may be a character with no width (the tiny model writes "\x00")
    page.wait_for_selector('#tokens-persona-judge .pj-tokens[data-state="done"] span.tok', timeout=timeout,
                           state="attached")


def token_count(page, elem_id):
    return page.locator(f"#{elem_id} span.tok").count()


def test_run_inspect_hover_heatmap_and_download(server, browser):
    page = open_page(browser, server)
    choose(page, "pair-select", "elementary + PhD")
    page.wait_for_function("() => document.querySelector('#pref-a textarea').value.includes('elementary school')")
    assert "PhD" in page.locator("#pref-b textarea").input_value()
    choose(page, "persona-b", "vivid")
    page.wait_for_function("() => document.querySelector('#pref-b textarea').value.includes('vivid')")
    page.locator("#swap-btn").click()
    page.wait_for_function("() => document.querySelector('#pref-a textarea').value.includes('vivid')")
    choose(page, "model-select", "tiny-test", custom=True)
    page.locator("#query textarea").fill("<b>Describe</b> a sunset.")
    set_number(page, "seed", 3)  # (with a random seed the tiny model sometimes ends within a few tokens)
    run(page)
    wait_done(page)

    tokens = page.locator("#tokens-persona-judge span.tok")
    assert tokens.count() > 5
    first = tokens.first
    for attr in ("title", "data-p", "data-q", "data-drafter", "data-judge", "data-block", "data-decision"):
        assert first.get_attribute(attr) is not None, attr
    assert first.get_attribute("data-drafter") in ("A", "B")
    assert page.locator(".pj-tokens img, .pj-tokens script, .pj-tokens b").count() == 0  # output is text
    first.hover()
    title = first.get_attribute("title")
    assert "p=" in title and "drafted by" in title and "judged by" in title
    assert page.locator("#tokens-direct span.tok").count() > 5  # the direct answer's text, token by token
    assert page.locator("#tokens-direct").inner_text().strip()

    # 3. the heatmap: blocks x position, coloured by decision, hover with token, p, q, p/q and drafter
    page.wait_for_selector("#pj-heatmap .js-plotly-plot", timeout=30_000)
    heat = page.evaluate("() => { const d = document.querySelector('#pj-heatmap .js-plotly-plot').data[0];"
                         " return {type: d.type, rows: d.y.length, hover: d.text[0][0]}; }")
    assert heat["type"] == "heatmap" and heat["rows"] >= 2
    assert "p=" in heat["hover"] and "drafter" in heat["hover"]
    page.wait_for_selector("#pj-plot .js-plotly-plot", timeout=30_000)

    # 4. one compact JSON download with every panel
    with page.expect_download() as info:
        page.locator("#run-download").click()
    record = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [p["slot"] for p in record["panels"]] == ["persona-judge", "direct"]
    assert record["panels"][0]["steps"] and record["query"] == "<b>Describe</b> a sunset."
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-tiny.png"), full_page=True)
    page.close()


def test_add_personas_tick_methods_and_watch_them_stream_together(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-slow", custom=True)
    choose(page, "pair-select", "vivid + creative")  # prompts under which the tiny model writes all 48 tokens
    page.wait_for_function("() => document.querySelector('#pref-a textarea').value.includes('vivid')")
    # 1. personas: add C (a preset fills its text), the methods list grows "C alone"
    open_section(page, "More personas (C, D)", "#add-persona")
    page.locator("#add-persona").click()
    page.wait_for_selector("#pref-c textarea", state="visible")
    choose(page, "persona-c", "humour")
    page.wait_for_function("() => document.querySelector('#pref-c textarea').value.includes('humorous')")
    page.wait_for_selector("#methods label:has-text('C alone')")
    assert page.locator("#methods label:has-text('Persona-judge-Base')").count() == 0  # two personas only
    # 2. methods: one panel per ticked spec
    tick(page, "fusion")
    tick(page, "C alone")
    for panel in ("#panel-persona-judge", "#panel-direct", "#panel-fusion", "#panel-direct-c"):
        page.wait_for_selector(panel, state="visible")
    set_number(page, "max-new", 48)
    run(page)
    # all four grow at the same time: every panel has tokens while the run is still going
    page.wait_for_function(
        "() => ['tokens-persona-judge', 'tokens-direct', 'tokens-fusion', 'tokens-direct-c'].every("
        "id => document.querySelectorAll('#' + id + ' span.tok').length > 0)", timeout=30_000)
    assert page.locator("#run-status .pj-msg-ok").count() == 0, "the panels should fill while the run goes on"
    wait_done(page)
    for elem_id in ("tokens-persona-judge", "tokens-direct", "tokens-fusion", "tokens-direct-c"):
        assert token_count(page, elem_id) == 48
    fused = page.locator("#tokens-fusion span.tok").first
    assert "each persona alone" in fused.get_attribute("title") and "C (humour)" in fused.get_attribute("title")
    drafters = set(page.eval_on_selector_all("#tokens-persona-judge span.tok", "els => els.map(e => e.dataset.drafter)"))
    assert drafters == {"A", "B", "C"}
    # remove C again: its panel's method disappears from the list
    page.locator("#remove-persona").click()
    page.wait_for_selector("#pref-c textarea", state="hidden")
    assert page.locator("#methods label:has-text('C alone')").count() == 0
    page.close()


# A click answered within this while four panels stream 256 tokens each: measured 0.13-0.18 s on 2 cores
# (docs/benchmarks.md), an order of magnitude of margin for a busy machine.
RESPONSIVE_S = 2.0
# The bundled model's first Persona-judge token on screen after Run: measured 2.2 s on a quiet 2-core
# machine and 3.7 s with a test run beside it (docs/benchmarks.md).
FIRST_TOKEN_S = 8.0


def test_a_click_is_answered_within_2_s_while_four_panels_stream_256_tokens(server, browser, capsys):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-test", custom=True)
    tick(page, "fusion")
    tick(page, "A alone")
    set_number(page, "max-new", 256)
    page.get_by_text("Decoding parameters").click()  # closed again: the test reopens it mid-run
    run(page)
    page.wait_for_function("() => document.querySelectorAll('#tokens-fusion span.tok').length > 20", timeout=60_000)
    started = time.perf_counter()
    page.get_by_text("Decoding parameters").click()
    page.locator("#max-new input[type=number]").wait_for(state="visible", timeout=10_000)
    opened = time.perf_counter() - started
    running = page.locator("#run-status .pj-msg-ok").count() == 0
    wait_done(page, timeout=120_000)
    counts = [token_count(page, i) for i in ("tokens-persona-judge", "tokens-direct", "tokens-fusion", "tokens-direct-a")]
    with capsys.disabled():
        print(f"\naccordion opened {opened:.2f} s after the click, mid-run={running}; tokens {counts}")
    assert running, "the run ended before the page was tried; the check proved nothing"
    assert opened < RESPONSIVE_S, f"the accordion opened {opened:.2f} s after the click"
    assert all(c > 20 for c in counts)
    page.close()


def test_bad_input_is_a_message_in_the_page(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-test", custom=True)
    tick(page, "Persona-judge", on=False)
    tick(page, "Direct prompting", on=False)
    run(page)
    page.wait_for_selector("#run-status .pj-msg-error:has-text('Tick at least one method')", timeout=15_000)
    tick(page, "Persona-judge")
    page.locator("#pref-b textarea").fill("")
    run(page)
    page.wait_for_selector("#run-status .pj-msg-error:has-text('Preference B is empty')", timeout=15_000)
    page.close()


def test_stop_cancels_every_panel_then_run_again(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-slow", custom=True)
    tick(page, "fusion")
    set_number(page, "max-new", 256)
    run(page)
    page.wait_for_function("() => document.querySelectorAll('#tokens-persona-judge span.tok').length > 2", timeout=30_000)
    page.locator("#stop-btn").click()
    page.wait_for_selector("#run-status:has-text('Stopped')", timeout=15_000)
    page.wait_for_timeout(1000)
    counts = [token_count(page, i) for i in ("tokens-persona-judge", "tokens-direct", "tokens-fusion")]
    forwards = len(FORWARDS)
    page.wait_for_timeout(1500)
    assert [token_count(page, i) for i in ("tokens-persona-judge", "tokens-direct", "tokens-fusion")] == counts, \
        "tokens kept arriving after Stop"
    assert counts[0] < 256 and counts[1] < 256  # (fusion may end early: this seed draws end-of-text at once)
    assert len(FORWARDS) == forwards, "the model kept decoding on the server after Stop"

    choose(page, "model-select", "tiny-test", custom=True)
    set_number(page, "max-new", 24)
    run(page)
    wait_done(page)
    assert token_count(page, "tokens-persona-judge") == 24
    page.close()


def test_two_tabs_get_their_own_results(server, browser):
    first, second = open_page(browser, server), open_page(browser, server)
    for page, query in ((first, "Describe the sea."), (second, "Explain the moon.")):
        choose(page, "model-select", "tiny-test", custom=True)
        page.locator("#query textarea").fill(query)
        set_number(page, "seed", 11 if page is first else 12)
    run(first)
    run(second)
    wait_done(first)
    wait_done(second)
    a, b = first.locator("#tokens-persona-judge").inner_text(), second.locator("#tokens-persona-judge").inner_text()
    assert a.strip() and b.strip() and a != b
    with first.expect_download() as info:
        first.locator("#run-download").click()
    assert json.loads(Path(info.value.path()).read_text(encoding="utf-8"))["query"] == "Describe the sea."
    first.close()
    second.close()


# --------------------------------------------------------------------------- lab insight

def open_section(page, title, inside):
    """Open the accordion titled `title` unless the element `inside` it is already visible."""
    if not page.locator(inside).is_visible():
        page.get_by_text(title).first.click()
        page.locator(inside).wait_for(state="visible")
        page.wait_for_timeout(400)


def pick(page, elem_id, starts_with):
    """Choose the first option of a dropdown whose text starts with `starts_with`."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option").filter(has_text=starts_with).first.click()
    page.wait_for_timeout(200)


def sample_front(page, k, tokens, timeout=120_000):
    open_tab(page, "Did it work?")
    set_slider(page, "front-k", k)
    set_slider(page, "front-tokens", tokens)
    page.locator("#front-btn").click()
    page.wait_for_selector("#front-status .pj-msg-ok", timeout=timeout)
    page.wait_for_selector("#fit-front .js-plotly-plot", timeout=30_000)


def infer_user(page, index, timeout=60_000):
    open_tab(page, "Infer a persona")
    pick(page, "infer-user", f"user {index}:")
    page.wait_for_selector(f'#infer-profile .pj-profile[data-user="{index}"]', timeout=15_000)
    page.locator("#infer-btn").click()
    page.wait_for_selector("#infer-result .pj-infer tr[data-rank]", timeout=timeout)


def test_each_answer_shows_its_persona_fit_and_the_fit_heatmap(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-test", custom=True)
    tick(page, "fusion")
    set_number(page, "max-new", 24)
    run(page)
    wait_done(page)
    page.wait_for_selector("#tokens-fusion .pj-fit", timeout=30_000)
    for elem_id in ("tokens-persona-judge", "tokens-direct", "tokens-fusion"):
        chips = page.locator(f"#{elem_id} ~ * .pj-fit-chip, #{elem_id} .pj-fit-chip")
        assert sorted(chips.evaluate_all("els => els.map(e => e.dataset.label)")) == ["A", "B"], elem_id
        float(chips.first.get_attribute("data-fit"))
        meters = page.locator(f"#{elem_id} ~ * .pj-meter, #{elem_id} .pj-meter")  # next to the fit
        assert meters.evaluate_all("els => els.map(e => e.dataset.meter)") == [
            "flesch_kincaid_grade", "words", "vader_compound", "words_per_line"], elem_id
        assert " words" in meters.nth(1).inner_text() and meters.nth(2).inner_text().startswith("sentiment ")
    assert "Persona fit under tiny-llama" in page.locator("#tokens-persona-judge .pj-fit, #tokens-persona-judge ~ * .pj-fit").first.inner_text()
    # "Did it work?": the answers side by side (fit and meters), and the fit heatmap
    open_tab(page, "Did it work?")
    page.wait_for_selector("#answers-summary tr[data-slot]", timeout=15_000)
    rows = page.locator("#answers-summary tr[data-slot]")
    assert rows.evaluate_all("els => els.map(e => e.dataset.slot)") == ["persona-judge", "direct", "fusion"]
    assert rows.first.locator("td[data-fit]").count() == 2 and rows.first.locator("td[data-meter]").count() == len(METERS)
    assert page.locator("#answers-summary td.pj-top").count() >= 2  # the best fit under A and under B
    page.wait_for_selector("#fit-heatmap .js-plotly-plot", timeout=30_000)
    heat = page.evaluate("() => document.querySelector('#fit-heatmap .js-plotly-plot').data.map("
                         "d => ({type: d.type, rows: d.y.length, cols: d.z[0].length}))")
    assert [h["type"] for h in heat] == ["heatmap"] * 3 and all(h["rows"] == 2 for h in heat)
    assert "same model" in page.locator("#fit-note").inner_text()
    # a new run clears the table until its answers are scored
    open_tab(page, "Compare")
    run(page)
    page.wait_for_selector("#answers-summary .pj-fit-none", state="attached", timeout=5_000)
    assert page.locator("#answers-summary tr[data-slot]").count() == 0
    wait_done(page)
    open_tab(page, "Did it work?")
    page.wait_for_selector("#answers-summary tr[data-slot]", timeout=15_000)
    page.close()


def test_front_samples_k_per_method_with_progress_then_stop(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-test", custom=True)
    sample_front(page, 3, 8)
    assert "6 of 6 answers" in page.locator("#front-status").inner_text()
    traces = page.evaluate("() => document.querySelector('#fit-front .js-plotly-plot').data.map(d => d.name)")
    assert {"persona-judge", "direct"} <= set(traces)
    pick(page, "front-x", "words (words)")  # an axis can be a meter: the plot is redrawn at once
    page.wait_for_function("() => (document.querySelector('#fit-front .js-plotly-plot').layout.xaxis.title.text"
                           " || '').startsWith('words')", timeout=15_000)
    assert page.locator("#front-status tr[data-spec]").count() == 2
    front = download_record(page)["front"]
    assert len(front["answers"]) == 6 and front["samples"] == 3

    # a long front on the slow model: progress shows, Stop ends it, the server stops decoding
    choose(page, "model-select", "tiny-slow", custom=True)
    open_tab(page, "Did it work?")
    set_slider(page, "front-k", 16)
    set_slider(page, "front-tokens", 64)
    page.locator("#front-btn").click()
    page.wait_for_selector("#front-status:has-text('1 of 32 answers')", timeout=60_000)
    # the page stays responsive while sampling: another tab opens and answers at once
    started = time.perf_counter()
    open_tab(page, "Infer a persona")
    pick(page, "infer-user", "user 5:")
    page.wait_for_selector('#infer-profile .pj-profile[data-user="5"]', timeout=10_000)
    responsive = time.perf_counter() - started
    open_tab(page, "Did it work?")
    assert "32 of 32" not in page.locator("#front-status").inner_text(), "sampling ended before the check"
    print(f"\npicking a user answered {responsive:.2f} s after the click, mid-sampling")
    page.locator("#front-stop").click()
    page.wait_for_selector("#front-status:has-text('Stopped')", timeout=15_000)
    page.wait_for_timeout(1000)  # the token in flight is finished first
    forwards = len(FORWARDS)
    page.wait_for_timeout(1500)
    assert len(FORWARDS) == forwards, "the model kept sampling on the server after Stop"
    page.close()


def test_infer_a_persona_from_a_bundled_user_and_use_it_as_b(server, browser, tmp_path):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-test", custom=True)
    infer_user(page, 2)
    rows = page.locator("#infer-result tr[data-rank]")
    assert rows.count() == 6  # the six P-Soups personas
    assert page.locator("#infer-result .pj-truth").count() == 1  # the user's ground truth is marked
    best = rows.first.locator(".pj-cand-text").inner_text().strip()
    page.locator("#infer-use-b").click()
    open_tab(page, "Compare")
    page.wait_for_function("t => document.querySelector('#pref-b textarea').value === t", arg=best)
    open_tab(page, "Infer a persona")

    # malformed JSON: a message in the page; a good upload fills the table
    page.get_by_text("Paste or upload JSON").click()
    page.locator("#infer-json textarea").wait_for(state="visible")
    page.wait_for_timeout(400)  # let the accordion finish opening
    page.locator("#infer-json textarea").fill('[{"prompt": "Hi?", "chosen": "Hello!"')
    page.wait_for_timeout(300)
    page.locator("#infer-json-btn").click()
    page.wait_for_selector("#infer-result .pj-msg-error:has-text('not valid JSON')", timeout=15_000)
    pairs = [{"prompt": "Name a colour.", "chosen": "Blue, like the <b>sky</b>.", "rejected": "No."}] * 2
    upload = tmp_path / "pairs.json"
    upload.write_text(json.dumps(pairs), encoding="utf-8")
    with page.expect_file_chooser() as chooser:
        page.locator("#infer-file").click()
    chooser.value.set_files(str(upload))
    page.wait_for_selector("#infer-profile:has-text('2 pairs from the uploaded file')", timeout=15_000)
    page.locator("#infer-btn").click()
    page.wait_for_selector("#infer-result:has-text('2 pairs scored')", timeout=30_000)
    assert page.locator("#infer-pairs b").count() == 0  # the pairs are text, never markup
    inference = download_record(page)["inference"]
    assert inference["pairs"] == 2 and inference["example_pairs"][0]["chosen"] == pairs[0]["chosen"]
    page.close()


def test_a_share_link_opens_the_page_with_the_runs_form_and_the_seed_it_used(server, browser):
    """Run with the seed box empty, make the run's share link, open it: the form comes back (query,
    personas, model, settings) with the seed the run drew, and the page says what reproduces."""
    from urllib.parse import parse_qs, urlsplit

    from pjudge_core.ui import share

    page = open_page(browser, server)
    open_parameters(page)
    before = page.locator("#repetition-penalty input[type=number]").input_value()
    choose(page, "model-select", "tiny-test", custom=True)  # picking a model applies its recommended settings
    page.wait_for_function(f"() => document.querySelector('#repetition-penalty input[type=number]').value"
                           f" !== {json.dumps(before)}")
    choose(page, "persona-a", "humour")
    page.wait_for_function("() => document.querySelector('#pref-a textarea').value.includes('humorous')")
    page.locator("#pref-b textarea").fill("Answer like a pirate & keep it <short>.")
    page.locator("#query textarea").fill("Describe a sunset over the harbour.")
    set_number(page, "repetition-penalty", 1.3)
    seed = page.locator("#seed input[type=number]")
    seed.fill("")
    seed.press("Tab")
    assert page.locator("#share-btn").is_disabled()  # nothing to share before a run
    run(page)
    wait_done(page)
    page.locator("#share-btn").click()
    page.wait_for_function("() => (document.querySelector('#share-link textarea, #share-link input') || {}).value"
                           "?.includes('?run=1.')", timeout=15_000)
    url = page.locator("#share-link textarea, #share-link input").first.input_value()
    assert url.startswith(server + "?run=1.")
    assert "same model, dtype and device" in page.locator("#share-status").inner_text()
    drawn = share.decode(parse_qs(urlsplit(url).query)["run"][0])["fields"]["seed"]
    assert isinstance(drawn, int)
    page.close()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("() => document.querySelector('#query textarea')?.value"
                           " === 'Describe a sunset over the harbour.'", timeout=30_000)
    assert page.locator("#pref-b textarea").input_value() == "Answer like a pirate & keep it <short>."
    assert "humorous" in page.locator("#pref-a textarea").input_value()
    assert page.locator("#persona-a input").first.input_value() == "humour"
    assert page.locator("#model-select input").first.input_value() == "tiny-test"
    note = page.locator("#run-status").inner_text()
    assert f"seed {drawn}" in note and "same model, dtype and device" in note
    open_parameters(page)
    assert page.locator("#seed input[type=number]").input_value() == str(drawn)
    # the model's recommended settings did not overwrite the link's
    assert page.locator("#repetition-penalty input[type=number]").input_value() == "1.3"
    page.close()


def test_run_is_above_the_fold_on_a_laptop(server, browser):
    """At 1366 x 768 a first visitor sees Run without scrolling; the setup fits beside it."""
    page = open_page(browser, server, width=1366, height=768)
    page.wait_for_timeout(500)  # let the layout settle
    assert page.evaluate("() => window.scrollY") == 0
    box = page.locator("#run-btn").bounding_box()
    print(f"\nRun at 1366 x 768: y = {box['y']:.0f} .. {box['y'] + box['height']:.0f}")
    assert box["y"] >= 0 and box["y"] + box["height"] <= 768, f"Run is below the fold: {box}"
    for elem_id in ("pref-a", "pref-b", "query", "stop-btn"):  # what Run runs is in sight too
        other = page.locator(f"#{elem_id}").bounding_box()
        assert other["y"] + other["height"] <= 768, elem_id
    for hidden in ("#max-new", "#four-bit", "#add-persona"):  # secondary settings are folded away
        assert not page.locator(hidden).is_visible(), hidden
    page.close()


def test_every_tab_opens_and_its_feature_runs(server, browser):
    """Compare runs; Did it work? shows the fit (its front runs in the test above); Infer a persona
    runs (above); Judge capacity and About here. Visiting every tab leaves one button per tab."""
    page = open_page(browser, server)
    tabs = page.get_by_role("tab")
    assert tabs.all_inner_texts() == list(TABS)
    choose(page, "model-select", "tiny-test", custom=True)
    set_number(page, "max-new", 16)
    run(page)
    wait_done(page)
    open_tab(page, "Did it work?")
    page.wait_for_selector("#answers-summary tr[data-slot]", timeout=15_000)
    page.wait_for_selector("#fit-heatmap .js-plotly-plot", timeout=30_000)
    open_tab(page, "Compare")
    choose(page, "model-select", "tiny-long", custom=True)  # the model picked on Compare
    open_tab(page, "Judge capacity")
    set_slider(page, "capacity-n", 10)
    page.locator("#capacity-btn").click()
    page.wait_for_selector("#capacity-result .pj-msg-ok:has-text('alignment accuracy')", timeout=60_000)
    assert "10 student/PhD preference pairs" in page.locator("#capacity-result").inner_text()
    open_tab(page, "About")
    legend = page.locator("#about-colours")
    for cls in ("tok-accepted", "tok-resampled", "tok-bonus", "tok-sampled", "tok-fused", "drafter-A"):
        assert legend.locator(f".{cls}").count() >= 1, cls
    accepted = legend.locator(".tok-accepted").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert accepted.startswith("rgba(46, 158, 91"), accepted  # the stylesheet's colour, not a default
    assert "2504.12663" in page.locator("#about-cite").inner_text()
    for name in TABS:  # back and forth: each tab shows its own content
        open_tab(page, name)
        for other, selector in TABS.items():
            if other != name:
                assert not page.locator(selector).is_visible(), (name, other)
    assert page.get_by_role("tab").count() == len(TABS), "a tab button is drawn twice"
    page.close()


def test_on_a_phone_every_tab_is_in_reach_and_run_works(server, browser):
    page = open_page(browser, server, width=390, height=844)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
    for tab in page.get_by_role("tab").all():  # no tab hides in a menu
        box = tab.bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= 390, tab.inner_text()
    for name in ("Did it work?", "Infer a persona", "Judge capacity", "About", "Compare"):
        open_tab(page, name)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, f"{name} scrolls sideways"
    choose(page, "model-select", "tiny-test", custom=True)
    set_number(page, "max-new", 16)
    page.locator("#run-btn").scroll_into_view_if_needed()
    run(page)
    wait_done(page)
    assert token_count(page, "tokens-persona-judge") == 16
    panel = page.locator("#tokens-persona-judge").bounding_box()
    assert panel["x"] + panel["width"] <= 390
    open_tab(page, "Did it work?")
    page.wait_for_selector("#answers-summary tr[data-slot]", timeout=15_000)
    page.close()


SHOT_TABS = ("Compare", "Did it work?", "Infer a persona", "Judge capacity", "About")


def screenshot_tabs(page, name):
    """One full-page screenshot per tab, under artifacts/."""
    for tab in SHOT_TABS:
        open_tab(page, tab)
        page.wait_for_timeout(500)
        slug = tab.lower().replace(" ", "-").replace("?", "")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{slug}.png"), full_page=True)


@pytest.mark.slow
def test_the_bundled_models_first_token_is_on_screen_within_8_s_and_screenshots(server, browser, capsys):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, server)
    choose(page, "model-select", "bundled", custom=True)
    page.locator("#load-btn").click()
    page.wait_for_selector("#model-status .pj-msg-ok", timeout=180_000)
    started = time.perf_counter()
    run(page)  # the default pair, query and settings: the run a first visitor sees
    page.wait_for_selector("#tokens-persona-judge span.tok", timeout=30_000)
    pj_first = time.perf_counter() - started
    page.wait_for_selector("#tokens-direct span.tok", timeout=30_000)
    both_first = time.perf_counter() - started
    wait_done(page, timeout=180_000)
    page.wait_for_selector("#pj-heatmap .js-plotly-plot", timeout=30_000)
    open_tab(page, "Did it work?")
    page.wait_for_selector("#fit-heatmap .js-plotly-plot", timeout=30_000)
    started = time.perf_counter()
    sample_front(page, 4, 32, timeout=300_000)
    front_s = time.perf_counter() - started
    started = time.perf_counter()
    infer_user(page, 0)
    infer_s = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nfirst tokens on screen: Persona-judge {pj_first:.2f} s, both panels {both_first:.2f} s after Run; "
              f"front of 4 x 2 answers of 32 tokens {front_s:.1f} s; inference of one user {infer_s:.1f} s")
    assert pj_first < FIRST_TOKEN_S and both_first < FIRST_TOKEN_S, (pj_first, both_first)
    open_tab(page, "Judge capacity")
    set_slider(page, "capacity-n", 20)
    page.locator("#capacity-btn").click()
    page.wait_for_selector("#capacity-result .pj-msg-ok", timeout=300_000)
    screenshot_tabs(page, "desktop-1400")
    page.close()

    for name, width, height, dark in (("laptop-1366", 1366, 768, False), ("phone-390", 390, 844, False),
                                      ("desktop-1400-dark", 1400, 900, True), ("phone-390-dark", 390, 844, True)):
        page = open_page(browser, server, width=width, height=height, dark=dark)
        page.screenshot(path=str(ARTIFACTS / f"{name}-first-screen.png"))  # what a first visitor sees
        tick(page, "fusion")
        set_number(page, "max-new", 32)
        run(page)
        wait_done(page, timeout=120_000)
        page.wait_for_selector("#pj-heatmap .js-plotly-plot", timeout=30_000)
        sample_front(page, 2, 16)
        page.wait_for_selector("#fit-heatmap .js-plotly-plot", timeout=30_000)
        infer_user(page, 1)
        screenshot_tabs(page, name)
        page.close()
