"""4-bit (bitsandbytes NF4) on this CPU, for real, on the bundled model: smaller, and Persona-judge
keeps every guarantee (the reference decoder agrees token for token; the first token follows the
judge's distribution, and the test tells it from the drafter's). Slow: the model is quantised on load."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_exactness import ALPHA, goodness_of_fit, total_variation, warp

import pjudge_core.engine.loading as loading
from pjudge_core import DecodeSettings, generate, load_model, prompt_ids
from pjudge_core.engine.methods import METHODS

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


@pytest.mark.parametrize("greedy", [False, True])
def test_four_bit_persona_judge_matches_the_reference_decoder(bundled_4bit, greedy):
    settings = DecodeSettings(max_new_tokens=12, seed=3, greedy=greedy, repetition_penalty=1.1)
    fast = generate(bundled_4bit, "persona-judge", QUERY, [FRENCH, ENGLISH], settings)
    assert [(s.token_id, s.decision, s.drafter) for s in fast.steps] == \
        METHODS["persona-judge"].reference(bundled_4bit, QUERY, [FRENCH, ENGLISH], settings)
    assert sum(c.isalpha() for c in fast.text) > 10


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
