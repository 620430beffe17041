"""Persona fit: per-token implicit rewards, `eval fit`, the report's scatter, and `compare`."""

import json

import pytest
import torch
from conftest import make_tiny_lm

from pjudge_core import DecodeSettings, InputError, RunSpec, persona_fit, prompt_ids
from pjudge_core.cli import main
from pjudge_core.evaluation.runs.batch import record_seed, run_batch
from pjudge_core.evaluation.runs.compare import compare, stream_compare
from pjudge_core.evaluation.self_judge.fit import answer_fits, summarize_fits

QUERY = "Describe a sunset over the sea."
PREFS = ["Be concise.", "Be imaginative and creative."]
ANSWER = "A warm, vivid sunset over the deep blue sea."


def hand_logprobs(lm, prompt, response):
    """log p(response_t | prompt, response_<t) from one unpadded full forward."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].float(), -1)
    return [logp[len(prompt) - 1 + t, token].item() for t, token in enumerate(response)]


def test_per_token_fit_equals_a_hand_computation(tiny_lm):
    tok = tiny_lm.tokenizer
    fit = persona_fit(tiny_lm, QUERY, ANSWER, PREFS)
    response = tok(ANSWER, add_special_tokens=False)["input_ids"]
    base = hand_logprobs(tiny_lm, prompt_ids(tok, QUERY, []), response)
    assert fit.labels == ["A", "B"] and fit.preferences == dict(zip("AB", PREFS)) and fit.token_ids == response
    for label, pref in zip("AB", PREFS):
        cond = hand_logprobs(tiny_lm, prompt_ids(tok, QUERY, [pref]), response)
        expected = [c - b for c, b in zip(cond, base)]
        assert fit.per_token[label] == pytest.approx(expected, abs=1e-4)
        assert fit.mean[label] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
        assert fit.total[label] == pytest.approx(sum(expected), abs=1e-3)
    assert fit.mean["A"] != pytest.approx(fit.mean["B"])  # the personas do change the tiny model's opinion
    assert len(fit.texts) == len(response) and "".join(fit.texts) == ANSWER
    assert json.loads(json.dumps(fit.to_dict()))["per_token"]["A"] == fit.per_token["A"]


def test_shared_and_flat_scoring_give_the_same_fits(tiny_lm):
    answers = [(QUERY, ANSWER), (QUERY, "A warm sunset."), ("Explain the sea.", ANSWER), (QUERY, ANSWER)]
    shared = answer_fits(tiny_lm, answers, PREFS)
    flat = answer_fits(tiny_lm, answers, PREFS, share=False, batch_size=2)
    for s, f in zip(shared, flat):
        for label in "AB":
            assert s.per_token[label] == pytest.approx(f.per_token[label], abs=1e-4)
            assert s.mean[label] == pytest.approx(f.mean[label], abs=1e-4)
    assert shared[0] == shared[3]  # a repeated answer is scored once


def test_one_forward_per_prompt_never_one_per_token(tiny_lm):
    calls = []
    hook = tiny_lm.model.get_decoder().register_forward_hook(lambda *args: calls.append(1))
    try:
        persona_fit(tiny_lm, QUERY, ANSWER, PREFS, batch_size=1)
        assert len(calls) == 3  # persona A, persona B, no preference: one forward each
        calls.clear()
        persona_fit(tiny_lm, QUERY, ANSWER, PREFS)
        assert len(calls) == 1  # the three prompts in one batch
    finally:
        hook.remove()


def test_text_and_token_id_responses_agree(tiny_lm):
    ids = tiny_lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    as_text = persona_fit(tiny_lm, QUERY, ANSWER, PREFS)
    assert persona_fit(tiny_lm, QUERY, ids, PREFS) == as_text
    assert persona_fit(tiny_lm, QUERY, torch.tensor(ids), PREFS) == as_text
    multibyte = "Café — 🙂 sunset"  # characters split over several byte-level tokens
    assert "".join(persona_fit(tiny_lm, QUERY, multibyte, PREFS).texts) == multibyte
    # labels given as a dict are kept, and one persona is enough
    assert persona_fit(tiny_lm, QUERY, ids, {"B": PREFS[1]}).per_token["B"] == as_text.per_token["B"]


@pytest.mark.parametrize("query, response, prefs, message", [
    (QUERY, "", PREFS, "response is empty"),
    (QUERY, [], PREFS, "response is empty"),
    (" ", ANSWER, PREFS, "query is empty"),
    (QUERY, ANSWER, [], "at least one preference"),
    (QUERY, ANSWER, ["Be concise.", " "], "Preference B is empty"),
    (QUERY, [1, 10 ** 6], PREFS, "whole numbers in"),
    (QUERY, [1, True], PREFS, "whole numbers in"),
])
def test_bad_input_is_one_clear_sentence(tiny_lm, query, response, prefs, message):
    with pytest.raises(InputError, match=message):
        persona_fit(tiny_lm, query, response, prefs)


def test_a_response_longer_than_the_context_is_refused_or_skipped():
    short = make_tiny_lm(max_positions=128)
    long_answer = "sea " * 100
    with pytest.raises(InputError, match="longer than the model's context of 128"):
        persona_fit(short, QUERY, long_answer, PREFS)
    fits = answer_fits(short, [(QUERY, long_answer), ("Hi.", "A sea.")], PREFS, skip_long=True)
    assert fits[0] is None and fits[1].labels == ["A", "B"]


def test_summary_counts_a_win_only_when_every_persona_is_higher():
    rows = [{"key": k, "spec": spec, "mean": {"A": a, "B": b}}
            for k, spec, a, b in [(0, "direct", 0.0, 0.0), (0, "persona-judge", 1.0, 1.0),
                                  (1, "direct", 0.0, 0.0), (1, "persona-judge", 1.0, -1.0),
                                  (2, "direct", 0.5, 0.5), (2, "persona-judge", 2.0, 0.6),
                                  (3, "persona-judge", 9.0, 9.0)]]  # no direct answer to compare with
    rows.append({"key": 4, "spec": "direct", "mean": None})  # a skipped answer
    summary = summarize_fits(rows, ["A", "B"])
    beats = summary["beats_baseline"]["persona-judge"]
    assert (beats["wins"], beats["n"]) == (2, 3) and beats["low"] < 2 / 3 < beats["high"]
    assert summary["by_spec"]["direct"]["A"]["n"] == 3
    assert summary["by_spec"]["persona-judge"]["A"]["mean"] == pytest.approx(13 / 4)
    assert summarize_fits(rows, ["A", "B"], baseline="fusion")["beats_baseline"] == {}


@pytest.fixture
def batch_run(tmp_path, tiny_lm):
    """A small batch run of the tiny model (function-scoped: it runs after the one-thread fixture)."""
    out = tmp_path / "run.jsonl"
    prompts = [{"id": str(i), "prompt": q} for i, q in
               enumerate(["Describe a sunset.", "Explain the sea.", "Be bold about the sea.", "Sunset, please."])]
    run_batch(tiny_lm, prompts, PREFS, out, specs="persona-judge,direct,direct[A]",
              settings=DecodeSettings(seed=0, max_new_tokens=6), progress=False)
    return out


def test_eval_fit_scores_every_record_under_every_persona(tiny_lm, tiny_folder, batch_run, tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["eval", "fit", "--in", str(batch_run), "--model", tiny_folder, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "persona-judge beats direct on every persona in" in printed and "partly circular" in printed
    data = json.loads(out.read_text())
    assert data["kind"] == "fit" and data["labels"] == ["A", "B"] and data["preferences"] == dict(zip("AB", PREFS))
    assert len(data["scores"]) == 12 and data["skipped"] == []
    assert set(data["by_spec"]) == {"persona-judge", "direct", "direct[A]"}
    assert data["beats_baseline"]["persona-judge"]["n"] == 4 and data["baseline"] == "direct"
    # the same numbers as persona_fit on one record (the folder holds the tiny model's weights)
    record = json.loads(batch_run.read_text().splitlines()[0])
    row = next(s for s in data["scores"] if s["id"] == record["id"] and s["spec"] == record["spec"])
    assert row["mean"] == pytest.approx(persona_fit(tiny_lm, record["prompt"], record["text"], PREFS).mean, abs=1e-4)


def test_eval_fit_refuses_bad_files_without_writing(tiny_folder, tmp_path, capsys):
    out = tmp_path / "fit.json"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "1", "prompt": "p", "spec": "direct", "text": "t", "settings": {}}) + "\n")
    assert main(["eval", "fit", "--in", str(bad), "--model", tiny_folder, "--out", str(out), "--quiet"]) == 2
    assert "the records name no preferences" in capsys.readouterr().err and not out.exists()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"id": str(i), "prompt": "p", "spec": "direct", "text": "t",
                                         "run": {"preferences": {"A": f"Be {i}."}}}) + "\n" for i in range(2)))
    assert main(["eval", "fit", "--in", str(mixed), "--model", tiny_folder, "--out", str(out), "--quiet"]) == 2
    assert "record 2 comes from a run with other preferences" in capsys.readouterr().err and not out.exists()


def test_report_shows_fit_with_intervals_and_a_scatter(tiny_folder, batch_run, tmp_path, capsys):
    scores = tmp_path / "fit.json"
    assert main(["eval", "fit", "--in", str(batch_run), "--model", tiny_folder, "--out", str(scores), "--quiet"]) == 0
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["eval", "report", "--in", str(batch_run), "--scores", str(scores), "--out-md", str(md),
                 "--out-html", str(html)]) == 0
    text = md.read_text()
    assert "## Persona fit" in text and "beats direct on every persona" in text and "(baseline)" in text
    assert "| persona-judge | 4 |" in text and "/4 = " in text and "partly circular" in text
    page = html.read_text()
    assert page.count('"type":"scatter"') >= 6  # answers and means for each of the three specs
    assert "fit under A: Be concise." in page and "fit under B: Be imaginative" in page
    assert '"error_x"' in page and page.count("<script") >= 3  # plotly.js once, then one script per figure

    assert main(["eval", "report", "--in", str(batch_run), "--scores", str(scores), "--out-html", str(html),
                 "--fit-x", "B", "--fit-y", "A"]) == 0
    assert '"xaxis":{"title":{"text":"fit under B: Be imaginative and creative."}' in html.read_text()
    capsys.readouterr()
    md.unlink()
    assert main(["eval", "report", "--in", str(batch_run), "--scores", str(scores), "--out-md", str(md),
                 "--fit-x", "C"]) == 2
    assert "--fit-x C: the fit scores have personas A, B" in capsys.readouterr().err and not md.exists()


def test_compare_scores_seeded_samples_of_every_spec(tiny_lm):
    settings = DecodeSettings(seed=3, max_new_tokens=6)
    seen = []
    result = compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2, settings=settings,
                     progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    answers = result["answers"]
    assert [(a["spec"], a["sample"]) for a in answers] == [("persona-judge", 0), ("direct", 0),
                                                           ("persona-judge", 1), ("direct", 1)]
    assert [a["seed"] for a in answers] == [record_seed(3, 0)] * 2 + [record_seed(3, 1)] * 2
    assert set(result["by_spec"]) == {"persona-judge", "direct"} and result["by_spec"]["direct"]["B"]["n"] == 2
    assert result["beats_baseline"]["persona-judge"]["n"] == 2 and "partly circular" in result["note"]
    first = answers[0]
    assert first["mean"] == persona_fit(tiny_lm, QUERY, first["fit"]["token_ids"], PREFS).mean
    assert compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2, settings=settings)["answers"] == answers
    json.dumps(result)


def test_stream_compare_validates_first_and_stops_when_closed(tiny_lm):
    with pytest.raises(InputError, match="at least 1"):
        stream_compare(tiny_lm, QUERY, PREFS, "direct", samples=0)
    with pytest.raises(InputError, match="query is empty"):
        stream_compare(tiny_lm, " ", PREFS, "direct")
    with pytest.raises(InputError, match="exactly two preferences"):
        stream_compare(tiny_lm, QUERY, PREFS + ["Be bold."], "persona-judge-base")
    calls = []
    hook = tiny_lm.model.get_decoder().register_forward_hook(lambda *args: calls.append(1))
    try:
        stream = stream_compare(tiny_lm, QUERY, PREFS, "direct,direct[B]", samples=3,
                                settings=DecodeSettings(max_new_tokens=4))
        update = next(stream)
        assert (update["done"], update["total"]) == (1, 6) and update["result"]["seed"] is not None
        assert update["sample"]["spec"] == "direct" and len(update["result"]["answers"]) == 1
        stream.close()
        before = len(calls)
        assert list(stream) == [] and len(calls) == before  # nothing runs after close
    finally:
        hook.remove()


def test_stream_compare_every_token_reports_each_token_and_stops_mid_answer(tiny_lm):
    settings = DecodeSettings(max_new_tokens=12, seed=5)
    updates = list(stream_compare(tiny_lm, QUERY, PREFS, "direct", samples=2, settings=settings, every_token=True))
    answers = [u for u in updates if u["result"] is not None]
    steps = [u for u in updates if u["result"] is None]
    # Both answers decode together: every step decides one token of each answer in flight.
    assert [u["tokens"] for u in steps][:3] == [2, 4, 6] and steps[0]["partial"] == pytest.approx(2 / 12)
    assert max(u["tokens"] for u in steps) <= sum(a["sample"]["new_tokens"] for a in answers)
    assert [a["sample"] for a in answers] == compare(tiny_lm, QUERY, PREFS, "direct", samples=2,
                                                     settings=settings)["answers"]
    calls = []
    hook = tiny_lm.model.get_decoder().register_forward_hook(lambda *args: calls.append(1))
    try:
        stream = stream_compare(tiny_lm, QUERY, PREFS, "direct", samples=2, settings=settings, every_token=True)
        assert next(stream)["tokens"] == 2 and next(stream)["tokens"] == 4
        stream.close()  # mid-answer: the decoders stop where they are
        before = len(calls)
        assert list(stream) == [] and len(calls) == before and before <= 3
    finally:
        hook.remove()


def test_a_comparison_on_a_shared_engine_gives_the_same_answers_and_stops_only_itself(tiny_lm):
    from pjudge_core.engine.engine import Engine
    settings = DecodeSettings(max_new_tokens=10, seed=3)
    alone = compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2, settings=settings)
    engine = Engine(tiny_lm, rows=8).start()
    try:
        other = engine.submit(RunSpec.parse("direct").job(tiny_lm, QUERY, PREFS, settings.replace(max_new_tokens=300),
                                                           ignore_eos=True))
        updates = list(stream_compare(tiny_lm, QUERY, PREFS, "persona-judge,direct", samples=2, settings=settings,
                                      engine=engine))
        assert updates[-1]["result"]["answers"] == alone["answers"]
        stream = stream_compare(tiny_lm, QUERY, PREFS, "direct", samples=3, settings=settings, engine=engine,
                                every_token=True)
        next(stream)
        stream.close()  # cancels its own answers, not the other request
        assert other.wait(timeout=60) is not None and len(other.result.token_ids) == 300
    finally:
        engine.close()
