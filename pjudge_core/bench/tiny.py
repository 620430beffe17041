"""Models built in-process, with no download: the test suite's tiny chat model, and models of the
presets' shapes with random weights (what the device check times where no weights can travel).

Random weights decode nonsense, but a forward's cost depends only on the shapes, and every method's
arithmetic runs as with real weights; the tiny model's large initialisation makes p and q differ,
so that acceptances and rejections both happen.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ..engine.loading import LoadedModel

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

# The presets' architectures (their hub configs' sizes): layers, hidden, heads, KV heads, MLP, vocabulary.
PRESET_SHAPES = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": ("llama", 30, 576, 9, 3, 1536, 49152),
    "Qwen/Qwen2.5-0.5B-Instruct": ("qwen2", 24, 896, 14, 2, 4864, 151936),
    "Qwen/Qwen2.5-1.5B-Instruct": ("qwen2", 28, 1536, 12, 2, 8960, 151936),
    "Qwen/Qwen2.5-3B-Instruct": ("qwen2", 36, 2048, 16, 2, 11008, 151936),
    "Qwen/Qwen2.5-7B-Instruct": ("qwen2", 28, 3584, 28, 4, 18944, 152064),
}


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


def make_persona_blind_lm() -> LoadedModel:
    """The tiny model with every attention output zeroed: each position's next token depends on its own
    token only, so no preference in the prompt changes anything (a model that ignores every persona)."""
    lm = make_tiny_lm()
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    lm.name = "tiny-blind"
    return lm


def make_persona_following_lm(persona: str, others: list[str]) -> LoadedModel:
    """The tiny model built to follow `persona` and nothing else: the persona-blind model (no attention)
    given back one path in its first layer, uniform attention (queries zeroed) whose values read one
    direction of the embeddings. Only the tokens that `persona` holds and none of `others` (the
    placebo, the queries, other personas) lie along it; every other token's embedding is made
    orthogonal to it, so no other prompt text reaches any later position."""
    lm = make_persona_blind_lm()
    tok = lm.tokenizer
    common = {i for text in others for i in tok(text)["input_ids"]}
    own = sorted(set(tok(persona)["input_ids"]) - common)
    if not own:
        raise ValueError("the persona shares every token with the other texts")
    generator = torch.Generator().manual_seed(1)
    direction = torch.randn(lm.model.config.hidden_size, generator=generator)
    direction /= direction.norm()
    with torch.no_grad():
        embed = lm.model.model.embed_tokens.weight
        scale = embed.norm(dim=1).mean()
        embed -= torch.outer(embed @ direction, direction)  # nothing else lies along it
        embed[own] = direction * scale
        first = lm.model.model.layers[0].self_attn
        first.q_proj.weight.zero_()  # every visible position weighs the same
        first.v_proj.weight.copy_(torch.outer(torch.randn(first.v_proj.weight.shape[0], generator=generator), direction))
        first.o_proj.weight.normal_(0, 0.5, generator=generator)
    lm.name = "tiny-following"
    return lm


SLIDING_WINDOW = 8  # the tiny sliding-window models' window: under a prompt of 40-odd tokens it matters at once


def make_windowed_lm(kind: str) -> LoadedModel:
    """A tiny four-layer model of `kind`: "gemma2" (sliding and full layers alternating, soft-capped
    attention and logits, eager attention), "mistral" (every layer slides), "qwen2-sliding" (the layers
    from the second on slide), "qwen2" or "llama" (full attention); window `SLIDING_WINDOW`."""
    tokenizer = make_tokenizer()
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.5,
                  eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    if kind == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**common, head_dim=8, sliding_window=SLIDING_WINDOW,
                                               query_pre_attn_scalar=8, attn_implementation="eager"))
    elif kind == "mistral":
        model = MistralForCausalLM(MistralConfig(**common, sliding_window=SLIDING_WINDOW))
    elif kind == "qwen2-sliding":
        model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=True, sliding_window=SLIDING_WINDOW,
                                             max_window_layers=1))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    return LoadedModel(model=model.eval(), tokenizer=tokenizer, name=f"tiny-{kind}")


def moved(lm: LoadedModel, device: str, dtype: torch.dtype) -> LoadedModel:
    """A copy of `lm`'s weights on `device` in `dtype` (a fresh module: the original is left as it is)."""
    model = type(lm.model)(lm.model.config).eval()
    model.load_state_dict(lm.model.state_dict())
    return LoadedModel(model=model.to(device=device, dtype=dtype), tokenizer=lm.tokenizer, name=lm.name,
                       device=device, dtype=str(dtype).removeprefix("torch."))


def preset_shaped(name: str, tokenizer, device: str, dtype: torch.dtype) -> LoadedModel:
    """A model of preset `name`'s shape with random weights, made on `device` directly (no host copy)."""
    kind, layers, hidden, heads, kv_heads, mlp, vocab = PRESET_SHAPES[name]
    config = (LlamaConfig if kind == "llama" else Qwen2Config)(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
        tie_word_embeddings=kind == "llama", eos_token_id=tokenizer.eos_token_id)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype, attn_implementation="sdpa").eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=f"{name} (random weights)", device=device,
                       dtype=str(dtype).removeprefix("torch."))
