"""Every GPU failure of mixing devices, caught on the CPU: each method (and its reference decoder),
persona fit, inference and alignment accuracy run under `DeviceGuard`, which fails an operation that
mixes the model's output with a tensor made on the host (`device_guard`)."""

import pytest
import torch
from device_guard import DeviceGuard, DeviceMixError

from pjudge_core import DecodeSettings, RunSpec, infer_persona, persona_fit
from pjudge_core.bench.batch_check import persona_counts
from pjudge_core.engine.methods import METHODS
from pjudge_core.evaluation.self_judge.alignment import alignment_accuracy

QUERY = "Describe a sunset."
PREFS = ["Be concise.", "Be imaginative.", "Be funny.", "Be formal."]
EXAMPLES = [(name, spec) for name, method in METHODS.items() for spec in method.examples]


def test_the_guard_fails_a_host_tensor_mixed_with_the_models_output_and_passes_a_moved_one(tiny_lm):
    ids = torch.tensor([[5, 6, 7]])
    with DeviceGuard(tiny_lm):
        logits = tiny_lm.model(input_ids=ids).logits[0, -1]
        with pytest.raises(DeviceMixError, match="made on the host"):
            logits[:2] * torch.tensor([1.0, 2.0])
        logits[:2] * torch.tensor([1.0, 2.0]).to(logits)  # named a device: fine
        logits[:2] * torch.tensor([1.0, 2.0], device=logits.device)
        logits[torch.tensor([0, 1])]  # indexing with host indices: CUDA accepts it
        logits * torch.tensor(2.0)  # a 0-dim tensor: CUDA accepts it


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("method, spec", EXAMPLES)
def test_every_method_and_its_reference_decoder_keep_to_the_models_device(tiny_lm, method, spec, greedy):
    run = RunSpec.parse(spec)
    prefs = PREFS[:max(persona_counts(run))]
    settings = DecodeSettings(seed=1, max_new_tokens=12, greedy=greedy, repetition_penalty=1.2,
                              no_repeat_ngram_size=3)
    with DeviceGuard(tiny_lm) as guard:
        run.run(tiny_lm, QUERY, prefs, settings)
        METHODS[method].reference(tiny_lm, QUERY, run.preferences(prefs), run.settings(settings),
                                  **run.method_options())
    assert guard.checked > 100  # the guard saw the run's operations


def test_fit_inference_and_alignment_accuracy_keep_to_the_models_device(tiny_lm):
    pairs = [{"prompt": f"Describe thing {i}.", "chosen": "A warm sunset." * (1 + i % 2), "rejected": "Be bold.",
              "ground_truth_persona": PREFS[i % 2]} for i in range(4)]
    with DeviceGuard(tiny_lm):
        persona_fit(tiny_lm, QUERY, "A warm and vivid sunset over the sea.", PREFS[:2])
        persona_fit(tiny_lm, QUERY, "A warm and vivid sunset over the sea.", PREFS[:2], share=False)
        infer_persona(tiny_lm, pairs, PREFS[:3])
        alignment_accuracy(tiny_lm, pairs)
        alignment_accuracy(tiny_lm, pairs, share=False)
