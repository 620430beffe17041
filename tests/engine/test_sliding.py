"""Sliding-window attention: tiny Gemma-2, Mistral and Qwen2 models with a window of 8 tokens, under a
45-token prompt, decode with the engine exactly what `model.generate` decodes (greedy, 64 tokens);
full-attention models still do; an architecture the engine cannot mask exactly is refused at load."""

from __future__ import annotations

import json

import pytest
import torch

from pjudge_core import DecodeSettings, InputError, ModelLoadError, generate, load_model, prompt_ids
from pjudge_core.bench.tiny import SLIDING_WINDOW as WINDOW
from pjudge_core.bench.tiny import make_windowed_lm
from pjudge_core.engine.engine import Engine

QUERY = "Describe a sunset over the sea in vivid detail, and be imaginative and creative about it."
PREF = "Be richly descriptive and creative."


@pytest.mark.parametrize("kind", ["gemma2", "mistral", "qwen2-sliding", "qwen2", "llama"])
def test_the_engine_decodes_what_generate_decodes_with_sliding_windows(kind):
    lm = make_windowed_lm(kind)
    prompt = prompt_ids(lm.tokenizer, QUERY, [PREF])
    assert len(prompt) > 40 > WINDOW  # the window matters from the first token
    settings = DecodeSettings(greedy=True, max_new_tokens=64, repetition_penalty=1.0)
    ours = generate(lm, "direct", QUERY, [PREF], settings, ignore_eos=True).token_ids
    with torch.no_grad():
        theirs = lm.model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                   do_sample=False, max_new_tokens=64, min_new_tokens=64,
                                   pad_token_id=lm.tokenizer.pad_token_id)[0, len(prompt):].tolist()
    assert ours == theirs


def test_a_sliding_window_changes_what_the_model_writes():
    """The check above can fail: the same weights with the window ignored write something else."""
    lm = make_windowed_lm("mistral")
    settings = DecodeSettings(greedy=True, max_new_tokens=64, repetition_penalty=1.0)
    windowed = generate(lm, "direct", QUERY, [PREF], settings, ignore_eos=True).token_ids
    lm.model.config.sliding_window = None
    unwindowed = generate(lm, "direct", QUERY, [PREF], settings, ignore_eos=True).token_ids
    assert windowed != unwindowed


def test_persona_judge_in_a_batch_equals_alone_with_sliding_windows():
    lm = make_windowed_lm("gemma2")
    settings = DecodeSettings(seed=2, max_new_tokens=40)
    alone = generate(lm, "persona-judge", QUERY, [PREF, "Be concise."], settings).token_ids
    engine = Engine(lm, rows=4)
    from pjudge_core import Request

    jobs = [engine.submit(Request("persona-judge", QUERY, [PREF, "Be concise."], settings.replace(seed=s)).job(lm))
            for s in (1, 2, 3)]
    engine.run()
    assert jobs[1].result.token_ids == alone


def test_an_architecture_the_engine_cannot_mask_exactly_is_refused(tmp_path):
    lm = make_windowed_lm("llama")
    lm.model.config.layer_types = ["full_attention", "chunked_attention"] * 2
    with pytest.raises(InputError, match="chunked_attention layers; the engine decodes only full and sliding"):
        generate(lm, "direct", QUERY, [PREF], DecodeSettings(max_new_tokens=2))
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["layer_types"][1] == "chunked_attention"
    with pytest.raises(ModelLoadError, match="refuses the model rather than decode it wrongly"):
        load_model(str(tmp_path))
