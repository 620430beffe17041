"""Without a network: loading fails in seconds and lists what is on this machine; cached hub
models and GGUF files in $PJUDGE_GGUF_DIR load and are offered."""

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT
from huggingface_hub import scan_cache_dir, try_to_load_from_cache

import pjudge_core.engine.hub as hub
from pjudge_core import persona_judge

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def fake_hub_cache(root: Path, repo_id: str, tiny_lm) -> Path:
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/...) holding the tiny model."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    tiny_lm.model.save_pretrained(snapshot)
    tiny_lm.tokenizer.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return root


def python(code: str, **env) -> tuple[subprocess.CompletedProcess, float]:
    full_env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # a real offline machine
    full_env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=UNREACHABLE, **env)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=ROOT,
                         timeout=300)
    return out, time.perf_counter() - started


def test_a_hub_id_fails_fast_without_a_network_and_lists_what_is_here(tmp_path, tiny_lm):
    cache = fake_hub_cache(tmp_path / "hf", "tiny-org/tiny-chat", tiny_lm)
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    (gguf_dir / "my-model.Q4_0.gguf").write_bytes(b"GGUF")
    code = (
        "import time\n"
        "from pjudge_core import load_model, ModelLoadError\n"
        "started = time.perf_counter()\n"
        "try:\n"
        "    load_model('no-such-org/no-such-model')\n"
        "except ModelLoadError as exc:\n"
        "    print(f'{time.perf_counter() - started:.2f}', exc)\n"
    )
    out, _ = python(code, HF_HUB_CACHE=str(cache), PJUDGE_GGUF_DIR=str(gguf_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, message = out.stdout.split(" ", 1)
    assert float(seconds) < 5, f"took {seconds} s"  # transformers alone retries for ~46 s here
    assert message.startswith("No network: 'no-such-org/no-such-model' is not on this machine")
    assert "bundled, tiny-org/tiny-chat" in message and "my-model.Q4_0.gguf" in message


def test_a_cached_hub_model_loads_without_a_network(tmp_path, tiny_lm):
    cache = fake_hub_cache(tmp_path / "hf", "tiny-org/tiny-chat", tiny_lm)
    code = ("from pjudge_core import load_model, persona_judge\n"
            "lm = load_model('tiny-org/tiny-chat')\n"
            "print(lm.name, persona_judge(lm, 'hi', 'a', 'b', max_new_tokens=5, seed=1).token_ids)\n")
    out, _ = python(code, HF_HUB_CACHE=str(cache))
    assert out.returncode == 0, out.stderr[-2000:]
    expected = persona_judge(tiny_lm, "hi", "a", "b", max_new_tokens=5, seed=1).token_ids
    assert out.stdout.strip() == f"tiny-org/tiny-chat {expected}"


def test_the_probe_answers_false_when_offline_or_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.constants, "ENDPOINT", UNREACHABLE)
    hub._probe.clear()
    started = time.perf_counter()
    assert hub.hub_reachable() is False
    assert time.perf_counter() - started < hub.PROBE_TIMEOUT_S + 1


def test_local_models_list_the_bundled_model_first_then_cache_and_gguf_files(monkeypatch, tmp_path, tiny_lm):
    cache = fake_hub_cache(tmp_path / "hf", "tiny-org/tiny-chat", tiny_lm)
    (cache / "models--half-org--no-config" / "snapshots").mkdir(parents=True)  # not a usable model
    monkeypatch.setattr(hub, "scan_cache_dir", functools.partial(scan_cache_dir, cache))
    monkeypatch.setattr(hub, "try_to_load_from_cache", functools.partial(try_to_load_from_cache, cache_dir=cache))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "b.gguf").write_bytes(b"GGUF")
    (tmp_path / "g" / "notes.txt").write_text("x")
    monkeypatch.setenv(hub.GGUF_DIR_ENV, str(tmp_path / "g"))
    assert hub.local_models() == ["bundled", "tiny-org/tiny-chat", str(tmp_path / "g" / "b.gguf")]
    monkeypatch.delenv(hub.GGUF_DIR_ENV)
    assert hub.gguf_files() == []
