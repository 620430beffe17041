"""The command line: text and JSON output, and one-line errors with a non-zero exit."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT


def cli(*args, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "pjudge_core", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=300)


def assert_one_line_error(out, message):
    """Progress bars of a model load may precede it; the error itself is one line, no traceback."""
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], out.stderr


def test_generate_prints_text_and_json_trace(tiny_folder):
    base = ["generate", "--model", tiny_folder, "--query", "Describe a sunset", "--pref-a", "Be concise.",
            "--pref-b", "Be imaginative.", "--seed", "3", "--max-new-tokens", "12"]
    text = cli(*base)
    assert text.returncode == 0, text.stderr
    traced = cli(*base, "--json")
    data = json.loads(traced.stdout)
    assert data["method"] == "persona-judge" and len(data["steps"]) == 12
    assert text.stdout.rstrip("\n") == data["text"]
    direct = json.loads(cli(*base, "--json", "--method", "direct", "--fixed-roles", "--greedy").stdout)
    assert direct["method"] == "direct" and direct["settings"]["greedy"] is True


def test_generate_runs_any_spec_with_up_to_four_personas(tiny_folder):
    out = cli("generate", "--model", tiny_folder, "--query", "Describe a sunset", "--pref", "Be concise.",
              "--pref", "Be imaginative.", "--persona", "humour", "--spec", "fusion(alpha=0.5,weights=2:1:1)",
              "--max-new-tokens", "6", "--seed", "1", "--repetition-penalty", "1.3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["spec"] == "fusion(alpha=0.5,weights=2:1:1)" and data["settings"]["labels"] == ["A", "B", "C"]
    assert data["settings"]["options"]["alpha"] == 0.5 and data["settings"]["repetition_penalty"] == 1.3
    assert set(data["steps"][0]["persona_p"]) == {"A", "B", "C"}
    official = json.loads(cli("generate", "--model", tiny_folder, "--query", "hi", "--preset", "vivid + creative",
                              "--spec", "official", "--max-new-tokens", "12", "--json").stdout)
    assert official["method"] == "official"


@pytest.mark.parametrize("args, message", [
    (["--query", " "], "query is empty"),
    (["--lam", "0"], "λ (tokens drafted per block) must be at least 1"),
    (["--spec", "fusion(beta=2)"], "fusion has no option 'beta'"),
    (["--spec", "persona-judge-base", "--pref", "Be brief."], "exactly two preferences"),
    (["--pref-b", ""], "at least two preferences"),
    (["--temperature", "0"], "Temperature"),
    (["--query", "word " * 600], "context"),
])
def test_bad_input_is_one_line_on_stderr_with_nonzero_exit(tiny_folder, args, message):
    base = {"--query": "hi", "--pref-a": "Be concise.", "--pref-b": "Be funny."}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    out = cli("generate", "--model", tiny_folder, *flat)
    assert out.returncode == 2
    assert_one_line_error(out, message)


def test_unknown_model_and_8bit_without_cuda_are_one_line_errors():
    for extra, message in ((["--model", "no-such-org/no-such-model"], "No network"),
                           (["--quantize", "8bit"], "8-bit quantization runs only on a CUDA GPU")):
        out = cli("generate", "--query", "hi", "--pref-a", "a", "--pref-b", "b", *extra,
                  env={"CUDA_VISIBLE_DEVICES": ""})
        assert out.returncode == 2
        assert_one_line_error(out, message)
