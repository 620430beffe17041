"""Shared fixtures: a tiny randomly initialised chat model built in-process (no download), and
the bundled SmolLM2 for the few slow end-to-end tests (marked ``slow``)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pjudge_core import LoadedModel

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Describe a sunset over the sea in vivid detail.",
    "Be concise. Be imaginative. Be richly descriptive and creative.",
    "The answer should be helpful, harmless, humorous and professional.",
    "Explain like I am in elementary school; explain like I have a PhD.",
    "<script>alert('x')</script> & <b>bold</b> \"quotes\"",
]


def make_tokenizer(chat_template: str | None = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """Byte-level BPE with ~300 tokens: every string round-trips, the vocabulary stays small."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = chat_template
    return fast


def make_tiny_lm(seed: int = 0, chat_template: str | None = CHAT_TEMPLATE, init_std: float = 0.5,
                 max_positions: int = 512) -> LoadedModel:
    """Two-layer Llama with peaked, prompt-sensitive outputs (a large init makes p and q differ)."""
    tokenizer = make_tokenizer(chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        initializer_range=init_std, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_lm() -> LoadedModel:
    return make_tiny_lm()


@pytest.fixture(scope="session")
def bundled_lm() -> LoadedModel:
    from pjudge_core import load_model

    return load_model("bundled")
