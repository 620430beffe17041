"""Real-browser tests: Playwright (pip) driving Debian's /usr/bin/chromium against the app.

The fast tests use tiny random models registered in the app ("tiny-test", and "tiny-slow" whose
forward sleeps so a run lasts long enough to be stopped). The slow test uses the bundled SmolLM2
and saves screenshots at desktop and phone widths, light and dark, under artifacts/.
A missing chromium is a FAILURE with a clear message, never a skip.
"""

import os
import time
from pathlib import Path

import pytest
from conftest import make_tiny_lm, serve_app

import app

CHROMIUM = os.environ.get("PJUDGE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytestmark = pytest.mark.browser
FORWARDS: list[float] = []  # forward passes of the "tiny-slow" model


@pytest.fixture(scope="module")
def server(tiny_lm):
    slow = make_tiny_lm(seed=1)

    def slow_forward(module, args):
        FORWARDS.append(time.perf_counter())
        time.sleep(0.08)

    # On the decoder stack: it runs in every forward (the CPU fast path projects its output itself).
    slow.model.get_decoder().register_forward_pre_hook(slow_forward)
    with serve_app({"tiny-test": tiny_lm, "tiny-slow": slow}, **app.launch_kwargs()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                    "(or set PJUDGE_CHROMIUM); browser tests must not be skipped.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url, width=1400, height=1000, dark=False):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url + ("?__theme=dark" if dark else ""), wait_until="domcontentloaded")
    page.wait_for_selector("#run-btn", timeout=30_000)
    return page


def choose(page, elem_id, value, custom=False):
    box = page.locator(f"#{elem_id} input").first
    box.click()
    if custom:
        box.fill(value)
        box.press("Enter")
    else:
        box.fill(value)
        page.get_by_role("option", name=value, exact=True).first.click()
    page.wait_for_timeout(200)


def set_max_new(page, n):
    number = page.locator("#max-new input[type=number]")
    if not number.is_visible():
        page.get_by_text("Decoding parameters").click()
        number.wait_for(state="visible")
        page.wait_for_timeout(500)  # let the accordion finish opening, or the value is reset
    for _ in range(3):
        number.fill(str(n))
        number.press("Tab")  # the slider takes the typed number on blur
        page.wait_for_timeout(300)
        if number.input_value() == str(n):
            break
    assert number.input_value() == str(n)


def wait_done(page, timeout=60_000):
    page.wait_for_selector('#pj-tokens .pj-tokens[data-state="done"] span.tok', timeout=timeout)
    page.wait_for_function(
        "() => { const t = document.querySelector('#direct-output textarea'); return t && t.value.length > 0 }",
        timeout=timeout)
    page.wait_for_selector("#run-status .pj-msg-ok", timeout=timeout)


def test_run_inspect_and_hover(server, browser):
    page = open_page(browser, server)
    choose(page, "pair-select", "elementary + PhD")
    page.wait_for_function(
        "() => document.querySelector('#pref-a textarea').value.includes('elementary school')")
    assert "PhD" in page.locator("#pref-b textarea").input_value()
    choose(page, "persona-b", "vivid")
    page.wait_for_function("() => document.querySelector('#pref-b textarea').value.includes('vivid')")
    page.locator("#swap-btn").click()
    page.wait_for_function("() => document.querySelector('#pref-a textarea').value.includes('vivid')")
    choose(page, "model-select", "tiny-test", custom=True)
    page.locator("#query textarea").fill("<b>Describe</b> a sunset.")
    page.get_by_role("button", name="Run", exact=True).click()
    wait_done(page)

    tokens = page.locator("#pj-tokens span.tok")
    assert tokens.count() > 5
    first = tokens.first
    for attr in ("title", "data-p", "data-q", "data-drafter", "data-block", "data-decision"):
        assert first.get_attribute(attr) is not None, attr
    assert first.get_attribute("data-drafter") in ("A", "B")
    assert page.locator("#pj-tokens img, #pj-tokens script").count() == 0
    page.wait_for_selector("#pj-plot .js-plotly-plot", timeout=30_000)
    page.wait_for_selector("#pj-acceptance .js-plotly-plot", timeout=30_000)
    first.hover()
    title = first.get_attribute("title")
    assert "p=" in title and "drafted by" in title
    assert page.locator("#run-download a, #run-download button").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-tiny.png"), full_page=True)
    page.close()


def test_stop_then_run_again(server, browser):
    page = open_page(browser, server)
    choose(page, "model-select", "tiny-slow", custom=True)
    set_max_new(page, 256)
    run = page.get_by_role("button", name="Run", exact=True)
    run.click()
    page.wait_for_selector("#pj-tokens span.tok", timeout=30_000)
    page.locator("#stop-btn").click()
    page.wait_for_selector("#run-status:has-text('Stopped')", timeout=15_000)
    page.wait_for_timeout(1000)
    count = page.locator("#pj-tokens span.tok").count()
    page.wait_for_timeout(1000)
    assert page.locator("#pj-tokens span.tok").count() == count, "tokens kept arriving after Stop"
    assert count < 256
    forwards = len(FORWARDS)
    page.wait_for_timeout(1000)
    assert len(FORWARDS) == forwards, "the model kept decoding on the server after Stop"

    choose(page, "model-select", "tiny-test", custom=True)
    set_max_new(page, 24)
    run.click()
    wait_done(page)
    assert page.locator("#pj-tokens span.tok").count() > 0
    page.close()


@pytest.mark.slow
def test_bundled_first_token_fast_and_screenshots(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, server)
    choose(page, "model-select", "bundled", custom=True)
    page.locator("#load-btn").click()
    page.wait_for_selector("#model-status .pj-msg-ok", timeout=180_000)
    choose(page, "pair-select", "vivid + creative")
    set_max_new(page, 48)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("#pj-tokens span.tok", timeout=30_000)
    first_token_s = time.perf_counter() - t0
    wait_done(page, timeout=120_000)
    page.wait_for_selector("#pj-plot .js-plotly-plot", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "desktop-1400.png"), full_page=True)
    print(f"first Persona-judge token on screen after {first_token_s:.2f} s")
    assert first_token_s < 2.0  # target < 1 s; margin for a loaded 2-core CI machine
    page.close()

    for name, width, dark in (("phone-390", 390, False), ("desktop-1400-dark", 1400, True),
                              ("phone-390-dark", 390, True)):
        page = open_page(browser, server, width=width, height=900, dark=dark)
        choose(page, "pair-select", "vivid + creative")
        set_max_new(page, 32)
        page.get_by_role("button", name="Run", exact=True).click()
        wait_done(page, timeout=120_000)
        page.wait_for_selector("#pj-plot .js-plotly-plot", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        page.close()
