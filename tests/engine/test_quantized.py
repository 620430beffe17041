"""4-bit (bitsandbytes NF4) on this CPU, for real, on the bundled model: smaller, and Persona-judge
keeps every guarantee (the reference decoder agrees token for token; the first token follows the
judge's distribution, and the test tells it from the drafter's). Slow: the model is quantised on load."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from conftest import ROOT
from test_exactness import ALPHA, goodness_of_fit, total_variation, warp

import pjudge_core.engine.loading as loading
from pjudge_core import DecodeSettings, generate, load_model, prompt_ids
from pjudge_core.engine.methods import METHODS
from pjudge_core.engine.prompting import persona_prompts
from pjudge_core.engine.runner import full_logits
from pjudge_core.engine.sampling import Warping

pytestmark = pytest.mark.slow
QUERY = "Describe a sunset."
FRENCH, ENGLISH = "Always answer in French.", "Always answer in English."  # first tokens differ: TV ≈ 0.8


@pytest.fixture(scope="module")
def bundled_4bit():
    return load_model("bundled", quantize="4bit")


def first_token_distribution(lm, preference):
    ids = torch.tensor([prompt_ids(lm.tokenizer, QUERY, [preference])])
    with torch.no_grad():
        return warp(lm.model(input_ids=ids).logits[0, -1].float())


def test_the_four_bit_model_runs_on_cpu_in_under_a_third_of_the_memory(bundled_4bit, bundled_lm):
    assert (bundled_4bit.quantize, bundled_4bit.device, bundled_4bit.dtype) == ("4bit", "cpu", "float32")
    assert type(bundled_4bit.model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert bundled_4bit.model.get_memory_footprint() < bundled_lm.model.get_memory_footprint() / 3
    assert loading.bundled_cache("4bit").joinpath("config.json").is_file()  # the next 4-bit load skips quantising


def greedy_margin(lm, step, settings: DecodeSettings, context: list[int]) -> tuple[float, float]:
    """(the margin of the greedy decision at `step`, from full forwards; how far the decoder's own p and
    q of its token lay from the full forwards' there). A decision is a near-tie when the first is
    within the second."""
    prompts, _ = persona_prompts(lm.tokenizer, QUERY, {"A": FRENCH, "B": ENGLISH})
    warping = Warping(settings)
    p = warping.probs(full_logits(lm.model, prompts[step.judge], context, 1), [context])[0]
    q = warping.probs(full_logits(lm.model, prompts[step.drafter], context, 1), [context])[0]
    drift = abs(step.p - float(p[step.token_id])) + (abs(step.q - float(q[step.token_id])) if step.q else 0.0)
    if step.decision == "bonus":  # argmax p
        top = torch.topk(p, 2).values
    elif step.decision == "resampled" and step.rejected_token_id is not None:
        draft = step.rejected_token_id
        keep = float(p[draft] - q[draft])  # kept iff p(t) >= q(t): how close the judge came to keeping it
        top = torch.topk(torch.clamp(p - q, min=0), 2).values  # argmax of the residual
        return min(abs(keep), float(top[0] - top[1])), drift
    else:  # an accepted draft: p(t) >= q(t)
        return abs(float(p[step.token_id] - q[step.token_id])), drift
    return float(top[0] - top[1]), drift


@pytest.mark.parametrize("greedy", [False, True])
def test_four_bit_persona_judge_matches_the_reference_decoder(bundled_4bit, greedy):
    """Token for token, or, where this CPU rounds the two paths differently, up to a near-tie.

    On a CPU with AVX512-BF16, bitsandbytes 0.50 multiplies a lone row (`gemv_4bit`) in bfloat16 and
    several rows after de-quantising them in float32. The fast decoder feeds one token a forward, the
    reference whole sequences, so their probabilities differ by bfloat16 rounding (about 1e-2
    relative), and a greedy decision whose margin is smaller can go either way. Elsewhere both are
    float32 and agree exactly. A sampled run draws uniforms that almost never fall within that margin."""
    settings = DecodeSettings(max_new_tokens=12, seed=3, greedy=greedy, repetition_penalty=1.1)
    fast = generate(bundled_4bit, "persona-judge", QUERY, [FRENCH, ENGLISH], settings)
    got = [(s.token_id, s.decision, s.drafter) for s in fast.steps]
    want = METHODS["persona-judge"].reference(bundled_4bit, QUERY, [FRENCH, ENGLISH], settings)
    assert sum(c.isalpha() for c in fast.text) > 10
    if got == want:
        return
    assert greedy and has_avx512bf16(), "float32 kernels: the fast and the reference decoder must agree exactly"
    i = next(k for k, (a, b) in enumerate(zip(got + [None], want + [None])) if a != b)
    margin, drift = greedy_margin(bundled_4bit, fast.steps[i], settings, [t for t, _, _ in got[:i]])
    assert margin <= 2 * drift, f"token {i}: a margin of {margin:.2e} is not explained by a drift of {drift:.2e}"


def test_four_bit_persona_judge_first_token_follows_the_judge(bundled_4bit):
    """Few samples (each costs two 4-bit prefills, ~0.3 s on 2 quiet cores): the personas' first
    tokens differ so much (TV ≈ 0.8) that 80 samples tell them apart."""
    tokens = np.array([generate(bundled_4bit, "persona-judge", QUERY, [FRENCH, ENGLISH],
                                DecodeSettings(max_new_tokens=1, seed=s)).token_ids[0] for s in range(80)])
    judge, drafter = first_token_distribution(bundled_4bit, ENGLISH), first_token_distribution(bundled_4bit, FRENCH)
    assert goodness_of_fit(tokens, judge) > ALPHA
    assert total_variation(judge, drafter) > 0.5
    assert goodness_of_fit(tokens, drafter) < ALPHA  # power: the drafter's distribution is rejected


def test_the_command_line_generates_in_four_bit_on_cpu():
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-m", "pjudge_core", "generate", "--quantize", "4bit", "--query", QUERY,
                          "--pref-a", "Be vivid.", "--pref-b", "Be brief.", "--max-new-tokens", "8", "--seed", "0"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sum(c.isalpha() for c in out.stdout) > 5
