"""Persona-judge Studio engine: training-free personalised alignment at decoding time.

    from pjudge_core import load_model, persona_judge, direct_prompt
    lm = load_model()                      # bundled SmolLM2-135M-Instruct, offline
    result = persona_judge(lm, "Describe a sunset.", "richly descriptive", "imaginative", seed=0)
    print(result.text, result.stats["acceptance_rate"])
"""

from .decoding import (
    Stream,
    direct_prompt,
    persona_judge,
    stream_direct,
    stream_persona_judge,
)
from .errors import InputError, ModelLoadError, PJudgeError
from .loading import BUNDLED, LoadedModel, load_model
from .prompting import combine_preferences, prompt_ids, prompt_text
from .sampling import SamplingConfig
from .trace import Result, Step

__all__ = [
    "BUNDLED", "InputError", "LoadedModel", "ModelLoadError", "PJudgeError", "Result",
    "SamplingConfig", "Step", "Stream", "combine_preferences", "direct_prompt", "load_model",
    "persona_judge", "prompt_ids", "prompt_text", "stream_direct", "stream_persona_judge",
]
