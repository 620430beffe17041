"""Scoring split across processes (`evaluation.runs.sharding`): chunks, resume, and a real two-process
run under torchrun that must give one process's numbers."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from pjudge_core import InputError
from pjudge_core.cli import main
from pjudge_core.evaluation.runs.sharding import Processes, ShardedMap, partial_path, score_all
from pjudge_core.evaluation.self_judge import alignment

PERSONAS = ["Explain like I am in elementary school.", "Explain like I have a PhD."]
CANDIDATES = ["Be concise.", "Explain like I have a PhD.", "Be imaginative and creative, with vivid detail."]
PREFS = {"A": "Be concise.", "B": "Be imaginative and creative."}


def write_pairs(path, n=11):
    path.write_text(json.dumps([
        {"prompt": f"Describe a sunset number {i}.", "chosen": "A warm sunset over the sea." * (1 + i % 3),
         "rejected": "Be concise, be bold." + " sea" * (i % 4), "ground_truth_persona": PERSONAS[i % 2]}
        for i in range(n)]))
    return path


def write_records(path):
    """A batch run's records: 4 prompts x 2 specs, one of them empty (skipped)."""
    texts = {"persona-judge": ["A warm, vivid sunset.", "The sea is deep.", "Bold!", ""],
             "direct": ["Sunset.", "Sea: water.", "I can help.", "Short."]}
    with open(path, "w") as fh:
        for i in range(4):
            for spec, answers in texts.items():
                fh.write(json.dumps({"id": str(i), "prompt": f"Describe thing {i}.", "spec": spec, "method": spec,
                                     "text": answers[i], "settings": {}, "stats": {},
                                     "run": {"model": "tiny", "preferences": PREFS}}) + "\n")
    return path


def write_users(path):
    pairs = [{"prompt": "Describe a sunset.", "chosen": "A warm sunset over the sea.", "rejected": "A cold sea."},
             {"prompt": "Explain the sea.", "chosen": "The sea is deep.", "rejected": "The sea is deep and blue."},
             {"prompt": "Be brief.", "chosen": "Brief.", "rejected": "Not so brief at all, no."}]
    path.write_text(json.dumps([{"ground_truth_persona": CANDIDATES[i % 3], "Pair-wise Comparative Feedback":
                                 pairs[i % 2:i % 2 + 2]} for i in range(5)]))
    return path


def squares(chunks):
    def score(chunk):
        chunks.append(list(chunk))
        return [{"x": x * x} for x in chunk]
    return score


def test_one_process_scores_chunks_in_order_and_keeps_rows_until_finished(tmp_path):
    out = tmp_path / "out.json"
    processes = Processes()
    assert (processes.size, processes.index, processes.is_main, processes.state) == (1, 0, True, None)
    chunks, seen = [], []
    mapper = ShardedMap(processes, run={"kind": "test"}, out=out, chunk=3,
                        progress=lambda done, total: seen.append((done, total)))
    items = list(range(8))
    assert mapper.prepare(items)(items, squares(chunks)) == [{"x": x * x} for x in items]
    assert chunks == [[0, 1, 2], [3, 4, 5], [6, 7]] and seen == [(0, 8), (3, 8), (6, 8), (8, 8)]
    lines = [json.loads(line) for line in partial_path(out).read_text().splitlines()]
    assert lines[0]["header"]["run"] == {"kind": "test"} and lines[0]["header"]["items"] == 8
    assert [line["item"] for line in lines[1:]] == items and lines[4]["row"] == {"x": 9}
    mapper.finish()
    assert not partial_path(out).exists()
    assert score_all(items, squares([])) == [{"x": x * x} for x in items]
    # without an output file nothing is kept
    assert ShardedMap(processes, run={}, chunk=5)(items, squares([]))[7] == {"x": 49}


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "out.json"
    items = list(range(10))

    def dies_on_the_third_chunk(chunk):
        if chunk[0] >= 6:
            raise KeyboardInterrupt
        return squares([])(chunk)

    with pytest.raises(KeyboardInterrupt):
        ShardedMap(Processes(), run={"kind": "test"}, out=out, chunk=3).prepare(items)(items, dies_on_the_third_chunk)
    path = partial_path(out)
    with open(path, "a") as fh:
        fh.write('{"item": 6, "ro')  # the line being written when the run died
    with pytest.raises(InputError, match="pass --resume to continue it"):
        ShardedMap(Processes(), run={"kind": "test"}, out=out, chunk=3).prepare(items)
    with pytest.raises(InputError, match="other model"):
        ShardedMap(Processes(), run={"kind": "test", "model": "x"}, out=out, resume=True).prepare(items)
    with pytest.raises(InputError, match="other items"):
        ShardedMap(Processes(), run={"kind": "test"}, out=out, resume=True).prepare(items[:-1])
    chunks = []
    mapper = ShardedMap(Processes(), run={"kind": "test"}, out=out, resume=True, chunk=3).prepare(items)
    assert mapper(items, squares(chunks)) == [{"x": x * x} for x in items]
    assert chunks == [[6, 7, 8], [9]]  # only what the first run had not saved
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 11
    with pytest.raises(InputError, match="--resume needs --out"):
        ShardedMap(Processes(), run={}, resume=True)
    with pytest.raises(InputError, match="--chunk must be a whole number"):
        ShardedMap(Processes(), run={}, chunk=0)


def test_align_acc_resumes_after_an_interruption(tiny_folder, tmp_path, monkeypatch, capsys):
    pairs = write_pairs(tmp_path / "pairs.json")
    whole, out = tmp_path / "whole.json", tmp_path / "acc.json"
    args = ["eval", "align-acc", "--pairs", str(pairs), "--model", tiny_folder, "--quiet", "--chunk", "4"]
    assert main([*args, "--out", str(whole)]) == 0
    score_pairs, calls = alignment.score_pairs, []

    def interrupted(lm, chunk, **kwargs):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return score_pairs(lm, chunk, **kwargs)

    monkeypatch.setattr(alignment, "score_pairs", interrupted)
    assert main([*args, "--out", str(out)]) == 130
    assert not out.exists() and len(partial_path(out).read_text().splitlines()) == 1 + 4
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert calls == [4, 4, 4, 3] and not partial_path(out).exists()
    assert json.loads(out.read_text())["per_pair"] == json.loads(whole.read_text())["per_pair"]
    assert main([*args, "--resume"]) == 2 and "--resume needs --out" in capsys.readouterr().err


def torchrun(*args, cwd):
    """Start `python -m pjudge_core ARGS` as two CPU processes under torchrun."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "pjudge_core", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def max_difference(a, b, keys):
    return max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in keys)


@pytest.mark.slow
def test_two_processes_under_torchrun_give_one_process_numbers(tiny_folder, tmp_path, capsys):
    pairs, records, users = write_pairs(tmp_path / "pairs.json"), write_records(tmp_path / "run.jsonl"), \
        write_users(tmp_path / "users.json")
    cands = tmp_path / "cands.json"
    cands.write_text(json.dumps(CANDIDATES))
    commands = {
        "align-acc": ["eval", "align-acc", "--pairs", str(pairs), "--chunk", "2"],
        "fit": ["eval", "fit", "--in", str(records), "--chunk", "3"],
        "infer-acc": ["eval", "infer-acc", "--pairs", str(users), "--candidates", str(cands), "--chunk", "1"],
    }
    common = ["--model", tiny_folder, "--quiet"]
    # the three launches at once: each is mostly two interpreters importing torch
    runs = {name: torchrun(*args, *common, "--out", str(tmp_path / f"{name}-2.json"), "--json", cwd=tmp_path)
            for name, args in commands.items()}
    for name, args in commands.items():
        assert main([*args, *common, "--out", str(tmp_path / f"{name}-1.json")]) == 0
    capsys.readouterr()
    for name, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout)["kind"] == name  # printed once, by the main process
        assert not partial_path(tmp_path / f"{name}-2.json").exists()
    one, two = ({name: json.loads((tmp_path / f"{name}-{n}.json").read_text()) for name in commands} for n in (1, 2))
    a, b = one["align-acc"]["per_pair"], two["align-acc"]["per_pair"]
    assert [p["index"] for p in a] == [p["index"] for p in b] and len(a) == 11
    assert max_difference(a, b, ("r_chosen", "r_rejected")) < 1e-4
    assert one["align-acc"]["accuracy"] == two["align-acc"]["accuracy"]
    a, b = one["fit"]["scores"], two["fit"]["scores"]
    assert [(s["id"], s["spec"]) for s in a] == [(s["id"], s["spec"]) for s in b] and len(a) == 7
    assert max(abs(x["mean"][k] - y["mean"][k]) for x, y in zip(a, b) for k in PREFS) < 1e-4
    assert two["fit"]["skipped"] == one["fit"]["skipped"] == [{"id": "3", "spec": "persona-judge",
                                                               "reason": "empty response"}]
    a, b = one["infer-acc"]["per_user"], two["infer-acc"]["per_user"]
    assert [(u["index"], u["best"], u["truth_rank"]) for u in a] == [(u["index"], u["best"], u["truth_rank"])
                                                                     for u in b]
    assert max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u["scores"], v["scores"])) < 1e-4
    assert one["infer-acc"]["accuracy"] == two["infer-acc"]["accuracy"] and len(b) == 5


@pytest.mark.slow
def test_batch_under_torchrun_writes_one_file_with_the_records_of_one_process(tiny_folder, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"id": str(i), "prompt": f"Describe thing number {i}."} for i in range(7)]))
    common = ["batch", "--prompts", str(prompts), "--pref-a", PREFS["A"], "--pref-b", PREFS["B"], "--model", tiny_folder,
              "--specs", "persona-judge,direct,fusion", "--max-new-tokens", "9", "--rows", "3", "--quiet"]
    two = torchrun(*common, "--out", str(tmp_path / "two.jsonl"), cwd=tmp_path)
    assert main([*common, "--out", str(tmp_path / "one.jsonl"), "--rows", "5"]) == 0
    _, stderr = two.communicate(timeout=600)  # two interpreters importing torch on a busy machine
    assert two.returncode == 0, stderr
    assert stderr.count("wrote 21 records") == 1  # the main process alone reports (and writes)

    def decided(name):
        records = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        return sorted((r["id"], r["spec"], r["settings"]["seed"], r["text"]) for r in records)
    assert decided("two.jsonl") == decided("one.jsonl") and len(decided("one.jsonl")) == 21
