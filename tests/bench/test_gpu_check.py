"""The device check (`scripts/gpu_check.py`) in its reduced form, on the CPU, so that it cannot rot
between the rare sessions that have a GPU: every section runs and says what it should."""

import importlib.util
import json

from conftest import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_device_check_runs_every_section_on_the_cpu_and_writes_what_it_prints(tmp_path):
    out = tmp_path / "check.json"
    report = load_script().main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    errors = {name: section["error"] for name, section in report.items() if isinstance(section, dict) and "error" in section}
    assert not errors
    assert report["environment"]["torch"] and report["environment"]["transformers"]
    float32 = report["methods"]["float32"]
    assert float32["runs"] >= 2 * 10 and float32["equal_to_reference"] == float32["runs"]  # every spec, both modes
    assert report["methods"]["bfloat16"]["runs"] == float32["runs"]  # (bf16: equal up to rounding near ties)
    for modes in report["batch_identity"].values():
        assert modes["reproducible"] == modes["requests"]
    assert report["batch_identity"]["float32"]["fast"] == report["batch_identity"]["float32"]["requests"]
    tiny = report["timing"]["tiny"]
    assert set(tiny["steps"]) == {"1", "4"} or set(tiny["steps"]) == {1, 4}
    assert tiny["zerogpu_token_s"] > 0 and tiny["generate_ms_per_token"] > 0
    assert all(step["forward_ms"] > 0 and step["host_ms"] >= 0 for step in tiny["steps"].values())
    memory = report["out_of_memory"]
    assert memory["failed_with"].startswith("The model's device ran out of memory")
    assert memory["others_equal_their_lone_runs"] and memory["later_request_equals_its_lone_run"]
    assert all(kind["equal_to_generate"] for kind in report["sliding_windows"].values())
