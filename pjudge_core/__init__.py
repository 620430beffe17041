"""Persona-judge Studio: training-free personalised alignment at decoding time.

    from pjudge_core import DecodeSettings, load_model, generate
    lm = load_model()                      # bundled SmolLM2-135M-Instruct, offline
    result = generate(lm, "persona-judge", "Describe a sunset.", ["richly descriptive", "imaginative"],
                      DecodeSettings(seed=0))
    print(result.text, result.stats["acceptance_rate"])

Layers (each a sub-package; lower layers never import higher ones):
  * `engine`     loading, prompting, sampling, caches, decoders, trace, run specs, reference decoders
  * `evaluation` batch runs, reward models, pairwise judge, alignment accuracy, reports, benchmark
  * `cli`        `python -m pjudge_core ...`, a thin layer over the two above
  * `ui`         what the Gradio app needs that is testable without a browser (HTML, charts, presets)
"""

from .engine.loading import BUNDLED, LoadedModel, load_model
from .engine.methods import (
    METHODS,
    direct_prompt,
    generate,
    persona_judge,
    stream_direct,
    stream_generate,
    stream_persona_judge,
)
from .engine.prompting import combine_preferences, prompt_ids, prompt_text
from .engine.settings import DecodeSettings
from .engine.specs import RunSpec, parse_specs
from .engine.trace import Result, Step, Stream
from .errors import InputError, ModelLoadError, PJudgeError

__all__ = [
    "BUNDLED", "METHODS", "DecodeSettings", "InputError", "LoadedModel", "ModelLoadError", "PJudgeError",
    "Result", "RunSpec", "Step", "Stream", "combine_preferences", "direct_prompt", "generate", "load_model",
    "parse_specs", "persona_judge", "prompt_ids", "prompt_text", "stream_direct", "stream_generate",
    "stream_persona_judge",
]
