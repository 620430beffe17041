"""The engine's benchmarks and the batched-vs-alone check, run small on the tiny model: each
produces the report its command prints (ratios of runs interleaved in one process), and the check
finds a batch identical to the lone runs. No timing is asserted here: the ratios are what a
benchmark run prints (docs/benchmarks.md)."""

import importlib.util
import json

import pytest
from conftest import ROOT

from pjudge_core.bench.batch_check import check_batched, format_check, mixed_requests
from pjudge_core.bench.batched import format_batched_report, run_batched_benchmark
from pjudge_core.bench.decoding import format_report, run_benchmark
from pjudge_core.bench.scoring import format_scoring_report, run_scoring_benchmark
from pjudge_core.cli import main

PERSONAS = ["Explain like I am in elementary school.", "Explain like I have a PhD."]


@pytest.fixture
def pairs():
    return [{"prompt": f"Describe a sunset number {i}.", "chosen": "A warm sunset over the sea." * (1 + i % 3),
             "rejected": "Be concise, be bold." + " sea" * (i % 4), "ground_truth_persona": PERSONAS[i % 2],
             "index": i} for i in range(10)]


def test_the_decoding_benchmark_times_every_run_against_generate(tiny_lm):
    report = run_benchmark(tiny_lm, short=8, long=16, repeats=1)
    assert set(report["per_token_ms"]) == {"generate", "direct", "persona_judge", "fusion", "persona_judge_long",
                                           "direct_long"}
    assert all(value > 0 for value in report["ratios"].values())
    assert "persona_judge / generate (per token, short)" in format_report(report)


def test_the_batched_benchmark_compares_together_with_one_by_one(tiny_lm):
    report = run_batched_benchmark(tiny_lm, tokens=6, repeats=1, together=(2,), sizes=(1, 2))
    assert set(report["tokens_per_s"]) == {1, 2} and all(rate > 0 for rate in report["tokens_per_s"].values())
    assert "2 persona-judge: together / one by one (throughput)" in report["ratios"]
    assert "| 2 |" in format_batched_report(report)


def test_the_batch_check_finds_mixed_requests_identical_to_their_lone_runs_in_each_mode(tiny_lm, tiny_folder,
                                                                                        capsys):
    report = check_batched(tiny_lm, mixed_requests(12, max_new_tokens=12), rows=4)
    for mode in ("fast", "reproducible"):
        assert report["modes"][mode]["identical"] == report["requests"] == 12 and not report["modes"][mode]["differing"]
    assert "fast: together (4 rows)" in format_check(report) and "identical token for token: 12 of 12" in \
        format_check(report)
    assert main(["check-batch", "--requests", "4", "--tokens", "8", "--rows", "2", "--modes", "reproducible",
                 "--model", tiny_folder, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 4 and list(out["modes"]) == ["reproducible"]
    assert main(["check-batch", "--modes", "slow", "--model", tiny_folder]) == 2


def test_the_scoring_benchmark_compares_shared_and_flat_in_one_process(tiny_lm, tiny_folder, pairs, tmp_path, capsys):
    report = run_scoring_benchmark(tiny_lm, pairs, repeats=1)
    assert report["pairs"] == 10 and set(report["pairs_per_second"]) == {"shared", "flat"}
    assert report["max_reward_difference"] < 1e-4 and report["same_outcomes"]
    shared, flat = report["per_run"]["shared"], report["per_run"]["flat"]
    assert shared["tokens"] < flat["tokens"] and shared["positions"] < flat["positions"]  # each prompt fed once
    assert report["ratios"]["pairs/s shared / flat"] > 0
    assert "pairs/s shared / flat" in format_scoring_report(report)
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs))
    assert main(["bench-scoring", "--pairs-file", str(path), "--pairs", "3", "--repeats", "1", "--model", tiny_folder,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 3


def test_the_host_cost_benchmark_prints_each_size_as_a_ratio_to_the_first(capsys):
    spec = importlib.util.spec_from_file_location("bench_host", ROOT / "scripts" / "bench_host.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--sizes", "1", "3", "--rounds", "1", "--tokens", "6"])
    assert set(report) == {1, 3} and report[1]["ratio"] == 1.0 and report[3]["ms_per_step"] > 0
    assert "3 requests" in capsys.readouterr().out


def test_the_packing_benchmark_prints_packed_against_plain_with_the_tokens_compared(tiny_folder, capsys):
    spec = importlib.util.spec_from_file_location("bench_packing", ROOT / "scripts" / "bench_packing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--model", tiny_folder, "--requests", "3", "--tokens", "6", "--rounds", "1"])
    assert set(report) == {1, 3} and report[3]["ratio"] > 0 and 0 <= report[3]["same_tokens"] <= 3
    assert "3 requests together: plain" in capsys.readouterr().out


def test_the_server_benchmark_prints_n_clients_as_ratios_to_one(tiny_folder, capsys):
    from conftest import free_port

    spec = importlib.util.spec_from_file_location("bench_server", ROOT / "scripts" / "bench_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--model", tiny_folder, "--clients", "3", "--tokens", "8", "--rounds", "1",
                          "--port", str(free_port())])
    assert set(report) == {"1 client", "3 clients", "library"}
    assert all(figures["tokens_per_s"] > 0 for figures in report.values())
    assert report["1 client"]["first_s"] > 0 and report["3 clients"]["first_s"] > 0
    assert "ratio 3/1: throughput" in capsys.readouterr().out
