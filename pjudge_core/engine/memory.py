"""What the KV pool may hold: a token's keys and values in bytes, the budget the device allows, and
telling an out-of-memory failure from any other.

A row of the pool costs `kv_bytes_per_token` for each token it holds: 2 (keys and values) × layers ×
key/value heads × head dim × bytes per value (bfloat16: SmolLM2-135M 22.5 KiB, Qwen2.5-0.5B 12 KiB,
1.5B 28 KiB, 3B 36 KiB, 7B 56 KiB; docs/deploying.md says how many runs fit on which GPU). The pool
is dense (slots × capacity, every slot as long as the longest row: attention then reads each row's
keys as one contiguous block, which transformers' sdpa and eager paths need; blocks would need a
paged-attention kernel they do not have), so its size is what the budget bounds (`default_budget`:
on a GPU the memory free when the engine starts, less a margin for the forwards' activations; on a
CPU a setting, `CPU_BUDGET_BYTES` unless the engine is given one).
"""

from __future__ import annotations

import torch

GIB = 1024 ** 3
CPU_BUDGET_BYTES = 4 * GIB  # the KV pool's default budget on a CPU (an `Engine(kv_budget=...)` setting)
GPU_MARGIN = 0.2  # of the free GPU memory, left for activations and the other processes' growth
GPU_MARGIN_MIN_BYTES = GIB // 2


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation that failed for want of memory (CUDA's, the CPU allocator's, Python's)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def kv_bytes_per_token(model) -> int:
    """Bytes one token's keys and values take in every layer, from the model's configuration."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    dtype = kv_dtype(model)
    return 2 * config.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def kv_dtype(model) -> torch.dtype:
    """The dtype the keys and values come in: the model's (a 4-bit model's compute dtype)."""
    quantization = getattr(model.config, "quantization_config", None)
    compute = getattr(quantization, "bnb_4bit_compute_dtype", None)
    if isinstance(compute, torch.dtype):
        return compute
    floating = [p.dtype for p in model.parameters() if p.dtype.is_floating_point]
    return floating[0] if floating else torch.float32


def default_budget(device: torch.device) -> int:
    """Bytes the KV pool may take on `device` (see the module docstring)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(0, int(free - max(GPU_MARGIN * free, GPU_MARGIN_MIN_BYTES)))
    return CPU_BUDGET_BYTES
