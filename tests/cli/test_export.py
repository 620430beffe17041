"""`export --format alpaca_eval`: a batch run as AlpacaEval's model outputs, one generator
(model:spec) per file, each instruction once per generator, and one-line errors."""

from __future__ import annotations

import json

import pytest

from pjudge_core import DecodeSettings, InputError
from pjudge_core.cli import main
from pjudge_core.evaluation.runs.batch import run_batch
from pjudge_core.evaluation.runs.exports import alpaca_eval_outputs, output_files, short_model_name
from pjudge_core.evaluation.runs.records import read_records

PROMPTS = ["Describe a sunset.", "Explain the sea.", "Name a colour."]
MODEL = "SmolLM2-135M-Instruct (bundled, offline)"


def record(pid, spec, text, *, seed=0, prefs=("Be concise.", "Be funny."), index=None, model=MODEL, prompt=None):
    """A record as `run_batch` writes it (the parts an export reads)."""
    i = int(pid) if index is None else index
    return {"id": str(pid), "index": i, "prompt": prompt or PROMPTS[i], "spec": spec, "method": spec.split("[")[0],
            "text": text, "settings": {}, "stats": {},
            "run": {"model": model, "preferences": dict(zip("AB", prefs)), "settings": {"seed": seed}}}


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def export(*args):
    return main(["export", "--format", "alpaca_eval", *map(str, args)])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- a real batch run

@pytest.fixture
def batch_run(tmp_path, tiny_lm):
    out = tmp_path / "run.jsonl"
    prompts = [{"id": f"p{i}", "prompt": q} for i, q in enumerate(PROMPTS)]
    run_batch(tiny_lm, prompts, ["Be concise.", "Be imaginative."], out, specs="persona-judge,direct,direct[A]",
              settings=DecodeSettings(seed=0, max_new_tokens=6), progress=False)
    return out


def test_a_batch_run_becomes_one_alpaca_eval_file_per_spec(batch_run, tmp_path, capsys):
    folder = tmp_path / "alpaca"
    assert export("--in", batch_run, "--out", folder) == 0
    printed = capsys.readouterr().out
    records = read_records(batch_run)
    files = {"persona-judge": "persona-judge.json", "direct": "direct.json", "direct[A]": "direct-a.json"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(files.values())
    for spec, name in files.items():
        entries = json.loads((folder / name).read_text(encoding="utf-8"))
        assert all(list(e) == ["instruction", "output", "generator"] for e in entries)
        assert {e["generator"] for e in entries} == {f"tiny-llama:{spec}"}
        assert [e["instruction"] for e in entries] == PROMPTS  # the prompts' order, whatever the lines' order
        texts = {r["prompt"]: r["text"].strip() for r in records if r["spec"] == spec}
        assert [e["output"] for e in entries] == [texts[p] for p in PROMPTS]
        assert f"tiny-llama:{spec}" in printed and str(folder / name) in printed
    assert printed.count("3 answers") == 3
    assert f"--model_outputs {folder / 'persona-judge.json'} --reference_outputs {folder / 'direct.json'}" in printed


def test_one_spec_into_one_file_and_a_model_name_of_ones_own(batch_run, tmp_path, capsys):
    out = tmp_path / "pj.json"
    assert export("--in", batch_run, "--out", out, "--spec", "direct[a]", "--model-name", "tiny-friendly") == 0
    entries = json.loads(out.read_text(encoding="utf-8"))
    assert [e["instruction"] for e in entries] == PROMPTS
    assert {e["generator"] for e in entries} == {"tiny-friendly:direct[A]"}
    assert not (tmp_path / "direct.json").exists()


# --------------------------------------------------------------------------- seeds, repetitions, names

def test_a_pooled_file_exports_one_run_seed_the_lowest_by_default(tmp_path, capsys):
    run = write(tmp_path / "pooled.jsonl", [record(i, spec, f"{spec} {i} seed {seed}", seed=seed)
                                            for seed in (3, 1) for i in range(3) for spec in ("persona-judge", "direct")])
    assert export("--in", run, "--out", tmp_path / "low") == 0
    assert "run seed 1 of 1, 3; choose with --seed" in capsys.readouterr().out
    entries = json.loads((tmp_path / "low" / "persona-judge.json").read_text())
    assert [e["output"] for e in entries] == [f"persona-judge {i} seed 1" for i in range(3)]
    assert {e["generator"] for e in entries} == {"SmolLM2-135M-Instruct:persona-judge:seed=1"}

    assert export("--in", run, "--out", tmp_path / "high", "--seed", "3") == 0
    entries = json.loads((tmp_path / "high" / "direct.json").read_text())
    assert [e["output"] for e in entries] == [f"direct {i} seed 3" for i in range(3)]
    assert {e["generator"] for e in entries} == {"SmolLM2-135M-Instruct:direct:seed=3"}

    assert export("--in", run, "--out", tmp_path / "none", "--seed", "2") == 2
    assert "no records of run seed 2; its run seeds: 1, 3" in error_line(capsys)


def test_an_instruction_appears_once_per_generator_or_the_export_is_refused():
    pooled = [record(i, "direct", "x", prefs=prefs) for prefs in (("a", "b"), ("c", "d")) for i in range(2)]
    with pytest.raises(InputError, match="prompt '0' more than once for SmolLM2-135M-Instruct:direct"):
        alpaca_eval_outputs(pooled)
    same_text = [record(0, "direct", "x"), record(1, "direct", "y", prompt=PROMPTS[0])]
    with pytest.raises(InputError, match="Prompts '0' and '1' .* have the same text"):
        alpaca_eval_outputs(same_text)
    # the same prompt under two specs is two generators, not a repetition
    result = alpaca_eval_outputs([record(0, "direct", "x"), record(0, "persona-judge", "y")])
    assert [g["name"] for g in result["generators"]] == ["SmolLM2-135M-Instruct:direct",
                                                        "SmolLM2-135M-Instruct:persona-judge"]


def test_entries_follow_the_prompts_order_and_keep_empty_answers():
    records = [record(2, "direct", "  two\n"), record(0, "direct", ""), record(1, "direct", " one ")]
    (g,) = alpaca_eval_outputs(records)["generators"]
    assert [e["instruction"] for e in g["entries"]] == PROMPTS
    assert [e["output"] for e in g["entries"]] == ["", "one", "two"] and g["empty"] == 1


def test_model_names_and_file_names():
    assert short_model_name(MODEL) == "SmolLM2-135M-Instruct"
    assert short_model_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen2.5-1.5B-Instruct"
    assert short_model_name("/models/tiny-llama/") == "tiny-llama"
    generators = alpaca_eval_outputs([record(0, "direct[]", "x"), record(0, "fusion(alpha=0.5)", "y"),
                                      record(0, "direct[]", "z", model="Qwen/Qwen2.5-0.5B-Instruct")])["generators"]
    names = {g["name"]: path.name for path, g in output_files(generators, "out")}
    assert names == {"SmolLM2-135M-Instruct:direct[]": "smollm2-135m-instruct-direct-none.json",
                     "Qwen2.5-0.5B-Instruct:direct[]": "qwen2.5-0.5b-instruct-direct-none.json",
                     "SmolLM2-135M-Instruct:fusion(alpha=0.5)": "smollm2-135m-instruct-fusion-alpha-0.5.json"}


# --------------------------------------------------------------------------- errors

GOOD = [record(i, spec, "t") for i in range(2) for spec in ("persona-judge", "direct")]


@pytest.mark.parametrize("records, args, message", [
    (None, [], "does not exist"),
    ([], [], "holds no records; run `python -m pjudge_core batch` first"),
    (GOOD, ["--spec", "fusion"], "Run spec 'fusion' has no records in"),
    (GOOD, ["--spec", "nonsense(((("], "Cannot read the run spec"),
    (GOOD, ["--format", "csv"], "Unknown export format 'csv'; the formats are: alpaca_eval."),
    (GOOD + [{"id": "1", "spec": "direct", "error": "The prompt is too long"}], [],
     "record 5 (direct, prompt '1') failed (The prompt is too long) and holds no answer"),
    (GOOD + [{**record(1, "direct[A]", "t"), "text": None}], [], "record 5 (direct[A], prompt '1') has no text"),
    (GOOD + [{**record(1, "direct[A]", "t"), "prompt": ""}], [], "has no prompt, which AlpacaEval needs"),
    (GOOD, ["--out-file"], "2 generators cannot share"),
    ([{**r, "run": None} for r in GOOD], [], "does not name its model; pass --model-name"),
])
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, capsys, records, args, message):
    run = tmp_path / "run.jsonl"
    if records is not None:
        write(run, records)
    out = tmp_path / "out"
    if "--out-file" in args:
        args, out = [], tmp_path / "out.json"
    assert main(["export", "--in", str(run), "--out", str(out), "--format", "alpaca_eval", *args]) == 2
    assert message in error_line(capsys)
    assert not out.exists()


def test_the_command_line_prints_the_error_without_a_traceback(tmp_path):
    from test_cli import assert_one_line_error, cli  # the subprocess helpers of tests/cli/test_cli.py

    out = cli("export", "--in", str(tmp_path / "missing.jsonl"), "--format", "alpaca_eval", "--out", str(tmp_path))
    assert out.returncode == 2
    assert_one_line_error(out, "does not exist")
