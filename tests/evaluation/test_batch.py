"""Batch generation: input formats, one record per (prompt id, run spec), resume after a kill."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from pjudge_core import DecodeSettings, InputError
from pjudge_core.cli import main
from pjudge_core.evaluation.reports.report import summarize, write_report
from pjudge_core.evaluation.runs.batch import record_seed, run_batch
from pjudge_core.evaluation.runs.records import read_prompts, read_records
from pjudge_core.presets import pair

PREFS = ["Be concise.", "Be imaginative."]


def settings(n=6, seed=1):
    return DecodeSettings(max_new_tokens=n, seed=seed)

PREF_A, PREF_B = "Be concise.", "Be imaginative."


def _strip(rec: dict) -> dict:
    """A record without the wall-clock parts (they differ between runs)."""
    stats = {k: v for k, v in rec["stats"].items() if k not in ("seconds", "compute_seconds", "tokens_per_s")}
    return {**rec, "stats": stats}


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"id": "a", "prompt": "Describe a sunset."},
                                {"id": "b", "prompt": "Explain the sea."},
                                {"id": "c", "prompt": "Be helpful."}]))
    return path


def test_read_formats(tmp_path, prompts_file):
    assert read_prompts(prompts_file)[1] == {"id": "b", "prompt": "Explain the sea."}
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": 7, "prompt": "one"}\n\n{"prompt": "two"}\n')
    assert read_prompts(jsonl) == [{"id": "7", "prompt": "one"}, {"id": "3", "prompt": "two"}]
    txt = tmp_path / "p.txt"
    txt.write_text("first question\n\nsecond question\n")
    assert read_prompts(txt) == [{"id": "1", "prompt": "first question"}, {"id": "3", "prompt": "second question"}]


def test_the_shipped_koala_prompts_read():
    prompts = read_prompts(ROOT / "data" / "koala_eval_50.json")
    assert len(prompts) == 50 and len({p["id"] for p in prompts}) == 50 and all(p["prompt"].strip() for p in prompts)


@pytest.mark.parametrize("text, line", [
    ('{"prompt": "ok"}\n{"prompt": "ok2"\n{"prompt": "x"}\n', 2),
    ('{"prompt": "ok"}\n{"id": 1}\n', 2),
    ('{"prompt": "ok"}\n\n{"prompt": ""}\n', 3),
    ('{"id": 1, "prompt": "a"}\n{"id": "1", "prompt": "b"}\n', 2),
])
def test_bad_jsonl_lines_are_reported(tmp_path, text, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=f"line {line}"):
        read_prompts(path)


def test_bad_json_list_item_has_its_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"id": "0", "prompt": "fine"},\n  {"id": "1"}\n]\n')
    with pytest.raises(InputError, match="line 3"):
        read_prompts(path)


def test_record_seed_is_stable_and_distinct():
    assert record_seed(0, 3) == record_seed(0, 3)
    assert len({record_seed(s, i) for s in range(3) for i in range(50)}) == 150
    assert record_seed(None, 1) is None


def test_run_batch_records(tiny_lm, tmp_path, prompts_file):
    out = tmp_path / "out.jsonl"
    summary = run_batch(tiny_lm, read_prompts(prompts_file), PREFS, out, settings=settings(), progress=False)
    assert summary["written"] == 6
    records = in_order(read_records(out))
    assert [(r["id"], r["spec"]) for r in records] == [
        (i, m) for i in "abc" for m in ("direct", "persona-judge")]
    pj = records[1]
    assert pj["settings"]["preferences"] == PREFS and pj["settings"]["lam"] == 4
    assert "acceptance_rate" in pj["stats"] and "steps" not in pj
    assert records[0]["settings"]["preferences"] == PREFS and records[0]["spec_label"] == "Direct prompting"
    assert pj["settings"]["seed"] == records[0]["settings"]["seed"] == record_seed(1, 0)
    # same seed, same text
    again = tmp_path / "again.jsonl"
    run_batch(tiny_lm, read_prompts(prompts_file), PREFS, again, settings=settings(), progress=False, trace=True)
    again_records = in_order(read_records(again))
    assert [r["text"] for r in again_records] == [r["text"] for r in records]
    assert len(again_records[0]["steps"]) == again_records[0]["stats"]["new_tokens"]


def in_order(records: list[dict]) -> list[dict]:
    """Records sorted by (id, spec): lines come in the order records finish."""
    return sorted(records, key=lambda r: (r["id"], r["spec"]))


def decided(records: list[dict]) -> list[tuple]:
    """What must not depend on how many rows decode together."""
    return [(r["id"], r["spec"], r["settings"]["seed"], r["text"], r["stats"]["new_tokens"],
             r["stats"].get("acceptance_rate")) for r in in_order(records)]


def test_the_records_do_not_depend_on_the_rows_decoded_together(tiny_lm, tmp_path, prompts_file):
    specs = "persona-judge,direct,fusion(alpha=0.5),persona-judge(lam=2),official"
    runs = {}
    for rows in (1, 3, 16):
        out = tmp_path / f"rows{rows}.jsonl"
        summary = run_batch(tiny_lm, read_prompts(prompts_file), PREFS, out, specs=specs, settings=settings(n=20),
                            progress=False, rows=rows)
        assert summary["rows"] == rows and summary["written"] == 15
        runs[rows] = decided(read_records(out))
    assert runs[1] == runs[3] == runs[16]


def test_a_record_that_fails_validation_is_reported_and_the_others_are_written(tmp_path):
    from conftest import make_tiny_lm
    lm = make_tiny_lm(max_positions=160)  # the tiny tokenizer spends ~100 tokens on a two-preference prompt
    prompts = [{"id": "short", "prompt": "Hi"}, {"id": "long", "prompt": "word " * 90}, {"id": "also", "prompt": "Yo"}]
    summary = run_batch(lm, prompts, PREFS, tmp_path / "out.jsonl", settings=settings(), progress=False, rows=2)
    assert summary["written"] == 4
    assert [(f["id"], f["spec"]) for f in summary["failed"]] == [("long", "persona-judge"), ("long", "direct")]
    assert "context" in summary["failed"][0]["error"]
    assert {r["id"] for r in read_records(tmp_path / "out.jsonl")} == {"short", "also"}


@pytest.mark.parametrize("rows", [0, 65])
def test_rows_out_of_range_is_refused_before_anything_runs(tiny_lm, tmp_path, prompts_file, rows):
    out = tmp_path / "never.jsonl"
    with pytest.raises(InputError, match="from 1 to 64"):
        run_batch(tiny_lm, read_prompts(prompts_file), PREFS, out, progress=False, rows=rows)
    assert not out.exists()


def test_every_variant_is_its_own_spec_and_its_own_report_row(tiny_lm, tmp_path, prompts_file):
    out = tmp_path / "variants.jsonl"
    specs = "persona-judge,persona-judge-base,direct,direct[A],direct[],fusion(alpha=0.5),official"
    run_batch(tiny_lm, read_prompts(prompts_file)[:2], PREFS, out, specs=specs, settings=settings(), progress=False)
    records = read_records(out)
    assert len(records) == 14
    by_spec = {r["spec"]: r for r in records if r["id"] == "a"}
    assert set(by_spec) == set(specs.split(","))
    assert by_spec["persona-judge-base"]["settings"]["alternate"] is False
    assert by_spec["persona-judge"]["settings"]["alternate"] is True
    assert by_spec["direct[A]"]["settings"]["preferences"] == PREFS[:1]
    assert by_spec["direct[]"]["settings"]["preferences"] == []
    assert by_spec["fusion(alpha=0.5)"]["settings"]["options"]["alpha"] == 0.5
    summary = summarize(records)
    assert set(summary) == set(specs.split(",")) and all(row["n"] == 2 for row in summary.values())
    assert summary["persona-judge-base"]["label"] == "Persona-judge-Base"


def test_specs_are_checked_before_anything_runs(tiny_lm, tmp_path, prompts_file):
    out = tmp_path / "never.jsonl"
    with pytest.raises(InputError, match="names persona C"):
        run_batch(tiny_lm, read_prompts(prompts_file), PREFS, out, specs="direct,direct[C]", progress=False)
    assert not out.exists()


def test_resume_after_kill_gives_the_same_records(tiny_lm, tmp_path, prompts_file):
    prompts = read_prompts(prompts_file)
    full = tmp_path / "full.jsonl"
    run_batch(tiny_lm, prompts, PREFS, full, settings=settings(seed=3), progress=False)
    lines = full.read_text().splitlines(keepends=True)
    killed = tmp_path / "killed.jsonl"
    killed.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # died writing record 4
    with pytest.raises(InputError, match="--resume"):
        run_batch(tiny_lm, prompts, PREFS, killed, settings=settings(seed=3), progress=False)
    summary = run_batch(tiny_lm, prompts, PREFS, killed, settings=settings(seed=3), progress=False, resume=True,
                        rows=2)  # another number of rows may continue it
    assert summary["skipped"] == 3 and summary["written"] == 3
    resumed = read_records(killed)
    assert [_strip(r) for r in in_order(resumed)] == [_strip(r) for r in in_order(read_records(full))]
    # resuming a finished file writes nothing and duplicates nothing
    assert run_batch(tiny_lm, prompts, PREFS, killed, settings=settings(seed=3), progress=False,
                     resume=True)["written"] == 0
    assert len(read_records(killed)) == 6
    # a spec added on resume is run for every prompt, the others are not repeated
    added = run_batch(tiny_lm, prompts, PREFS, killed, specs="persona-judge,direct,direct[B]",
                      settings=settings(seed=3), progress=False, resume=True)
    assert added["written"] == 3 and len(read_records(killed)) == 9
    # other settings or preferences cannot resume the file
    with pytest.raises(InputError, match="max_new_tokens"):
        run_batch(tiny_lm, prompts, PREFS, killed, settings=settings(n=7, seed=3), progress=False, resume=True)
    with pytest.raises(InputError, match="preferences"):
        run_batch(tiny_lm, prompts, PREFS[::-1], killed, settings=settings(seed=3), progress=False, resume=True)


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "1", "method": "direct", "text": "x"}\nnot json\n{"id": "2", "method": "direct", "text": "y"}\n')
    with pytest.raises(InputError, match="line 2"):
        read_records(path)


def test_cli_batch_and_errors(tiny_folder, tmp_path, prompts_file, capsys):
    out = tmp_path / "cli.jsonl"
    args = ["batch", "--prompts", str(prompts_file), "--preset", "elementary + PhD", "--methods", "direct",
            "--out", str(out), "--model", str(tiny_folder), "--max-new-tokens", "4", "--quiet"]
    assert main(args) == 0
    records = read_records(out)
    assert len(records) == 3 and records[0]["settings"]["preferences"] == list(pair("elementary + PhD"))
    assert records[0]["settings"]["seed"] == record_seed(0, 0)  # batch runs default to seed 0
    assert main(args + ["--resume"]) == 0 and len(read_records(out)) == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"prompt": 3}\n')
    capsys.readouterr()
    code = main(["batch", "--prompts", str(bad), "--pref-a", "a", "--pref-b", "b", "--out", str(tmp_path / "x.jsonl"),
                 "--model", str(tiny_folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "line 2" in err and len(err.splitlines()) == 1
    assert main(["batch", "--prompts", str(prompts_file), "--preset", "no such pair", "--out", str(tmp_path / "y.jsonl"),
                 "--model", str(tiny_folder)]) == 2
    assert main(["batch", "--prompts", str(prompts_file), "--pref-a", "a", "--pref-b", "b", "--methods", "beam",
                 "--out", str(tmp_path / "z.jsonl"), "--model", str(tiny_folder)]) == 2
    capsys.readouterr()
    assert main(args + ["--rows", "0", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "from 1 to 64" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_bundled_batch_and_report_end_to_end(bundled_lm, tmp_path):
    koala = ROOT / "data" / "koala_eval_50.json"
    prompts = read_prompts(koala)[:2]
    out = tmp_path / "bundled.jsonl"
    run_batch(bundled_lm, prompts, ["Be concise.", "Be friendly."], out, settings=DecodeSettings(max_new_tokens=16, seed=0),
              progress=False)
    records = read_records(out)
    assert len(records) == 4 and all(r["text"].strip() for r in records)
    result = write_report(out, [], out_md=tmp_path / "r.md", out_html=tmp_path / "r.html")
    assert set(result["summary"]) == {"persona-judge", "direct"}
    assert "plotly" in (tmp_path / "r.html").read_text()[:100000].lower()


def test_a_file_written_before_a_setting_existed_resumes_with_that_setting_at_its_default(tiny_lm, tmp_path,
                                                                                        prompts_file):
    out = tmp_path / "old.jsonl"
    prompts = read_prompts(prompts_file)[:2]
    settings = DecodeSettings(seed=0, max_new_tokens=4)
    run_batch(tiny_lm, prompts[:1], ["Be concise.", "Be funny."], out, settings=settings, progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    for record in lines:  # as a file from before `reproducible` existed
        del record["run"]["settings"]["reproducible"]
    out.write_text("".join(json.dumps(r) + "\n" for r in lines))
    summary = run_batch(tiny_lm, prompts, ["Be concise.", "Be funny."], out, settings=settings, progress=False,
                        resume=True)
    assert summary["skipped"] == len(lines) and summary["written"] == len(lines)
    with pytest.raises(InputError, match="different settings \\(reproducible\\)"):
        run_batch(tiny_lm, prompts, ["Be concise.", "Be funny."], out, settings=settings.replace(reproducible=True),
                  progress=False, resume=True)
