"""Shared fixtures and helpers: a tiny randomly initialised chat model built in-process (no
download), the same model saved as a folder (for the CLI), the bundled SmolLM2 for the few slow
end-to-end tests (marked ``slow``), and a helper that serves the app on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

# Tests never reach a model hub; set before huggingface_hub reads it at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from pjudge_core import LoadedModel, load_model
from pjudge_core.bench.tiny import CHAT_TEMPLATE, CORPUS, make_tiny_lm, make_tokenizer, moved  # noqa: F401
from pjudge_core.engine.packing import pack_linear_layers

ROOT = Path(__file__).resolve().parents[1]  # the repository


def in_bfloat16(lm: LoadedModel) -> LoadedModel:
    """A bfloat16 copy of `lm`'s weights (a fresh module: `deepcopy` fails once the app has hooked the model)."""
    return moved(lm, "cpu", torch.bfloat16)


def in_packed(lm: LoadedModel) -> LoadedModel:
    """A copy of `lm` whose decoder's linear layers are packed for oneDNN, as `load_model` packs a
    float32 model on a CPU."""
    copy = moved(lm, "cpu", torch.float32)
    assert pack_linear_layers(copy.model) > 0
    return copy


def make_repetitive_lm() -> LoadedModel:
    """The tiny model with its output head pulled towards its input embeddings, so it tends to
    repeat the token it just read: a repetition penalty or an n-gram ban visibly changes it."""
    lm = make_tiny_lm()
    with torch.no_grad():
        head = lm.model.lm_head.weight
        head.copy_(0.5 * lm.model.model.embed_tokens.weight + 0.5 * head)
    return lm


@pytest.fixture(scope="session")
def tiny_lm() -> LoadedModel:
    return make_tiny_lm()


@pytest.fixture(scope="session")
def repetitive_lm() -> LoadedModel:
    return make_repetitive_lm()


ALL_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def torch_threads(request):
    """One thread for the tiny models (their matmuls are too small to split: ~6x faster), every
    core for the bundled model's slow tests."""
    torch.set_num_threads(ALL_THREADS if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(ALL_THREADS)


@pytest.fixture(scope="session")
def bundled_lm() -> LoadedModel:
    return load_model("bundled")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_lm) -> str:
    """`tiny_lm` saved as a model folder, for code paths that load by name (CLI, load_model)."""
    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(folder)
    tiny_lm.tokenizer.save_pretrained(folder)
    return str(folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(models: dict, access=None, *, hardware: str | None = None, holder=None, build: dict | None = None,
              **launch):
    """Build the app with `models` registered by name (in `holder`, default the app's), serve it on a
    free port, yield its URL. `access` and `hardware` replace the environment's; `build`: more
    keywords for `app.build_demo`."""
    import app  # the app imports gradio: only the tests that serve it pay for that
    from pjudge_core.ui.deployment import Deployment

    holder = holder or app.MODELS
    for name, lm in models.items():
        holder.register(name, lm)
    deployment = Deployment(hardware or app.DEPLOYMENT.hardware, access or app.DEPLOYMENT.access)
    demo = app.build_demo(deployment, models=holder, **(build or {}))
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True, **launch)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


RESPONSES = {
    "persona-judge": ["A warm, vivid sunset.", "The sea is deep and blue.", "Helpful and kind.", "Be bold!"],
    "direct": ["Sunset.", "Sea: water.", "I can help you with that question today.", "Short."],
}


@pytest.fixture
def records_file(tmp_path):
    """A small batch output: 4 prompts x (persona-judge, direct), as `run_batch` writes them."""
    path = tmp_path / "batch.jsonl"
    with open(path, "w") as fh:
        for i in range(4):
            for spec, texts in RESPONSES.items():
                stats = {"new_tokens": 5 + i, "seconds": 0.5, "stopped_by": "eos"}
                if spec == "persona-judge":
                    stats["acceptance_rate"] = 0.5 + i / 10
                fh.write(json.dumps({"id": str(i), "prompt": f"Describe thing {i}.", "spec": spec, "method": spec,
                                     "text": texts[i], "settings": {}, "stats": stats}) + "\n")
    return path


def save_reward_model(folder, kind="llama", num_labels=1, template=True):
    """A tiny sequence-classification reward model saved as a folder."""
    tok = make_tokenizer(CHAT_TEMPLATE if template else None)
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, num_labels=num_labels,
                             pad_token_id=tok.pad_token_id, max_position_embeddings=512)
        model = LlamaForSequenceClassification(config)
    else:
        config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=512,
                            num_labels=num_labels, pad_token_id=tok.pad_token_id)
        model = GPT2ForSequenceClassification(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
