"""Persona-judge Studio: training-free personalised alignment at decoding time.

    from pjudge_core import DecodeSettings, load_model, generate, persona_fit, infer_persona
    lm = load_model()                      # bundled SmolLM2-135M-Instruct, offline
    result = generate(lm, "persona-judge", "Describe a sunset.", ["richly descriptive", "imaginative"],
                      DecodeSettings(seed=0))
    print(result.text, result.stats["acceptance_rate"])
    fit = persona_fit(lm, "Describe a sunset.", result.text, ["richly descriptive", "imaginative"])
    print(fit.mean)                        # {"A": nats/token, "B": ...}: the model's own opinion
    infer_persona(lm, pairs).best          # the persona preset that best explains a user's pairs

Layers (each a sub-package; lower layers never import higher ones, and no module imports itself
back through another: tests/test_layers.py checks both):
  * `engine`     loading, prompting, sampling, the methods and their registry, the batched engine
                 (job, scheduler, KV pool, runner), run specs, many requests at once
  * `evaluation` scoring, the model as its own judge, outside judges, meters, batch runs, reports
  * `bench`      speed and exactness of the engine, measured in one process
  * `cli`        `python -m pjudge_core ...`, a thin layer over the three above
  * `ui`         the Gradio app below `app.py`: one module per tab, the deployment, serving visitors
`errors` and `paths` sit below them all; `presets` (the data files, read through pydantic) between the
engine and evaluation.
"""

from .engine.api import direct_prompt, generate, persona_judge, stream_direct, stream_generate, stream_persona_judge
from .engine.loading import BUNDLED, LoadedModel, load_model
from .engine.methods import METHODS
from .engine.prompting import combine_preferences, prompt_ids, prompt_text
from .engine.requests import Batch, Request, generate_many, stream_many
from .engine.settings import DecodeSettings
from .engine.specs import RunSpec, parse_specs
from .engine.trace import Result, Step, Stream
from .errors import InputError, ModelLoadError, PJudgeError
from .evaluation.runs.compare import compare, stream_compare
from .evaluation.self_judge.fit import Fit, persona_fit
from .evaluation.self_judge.inference import Inference, infer_persona

__all__ = [
    "BUNDLED", "METHODS", "Batch", "DecodeSettings", "Fit", "Inference", "InputError", "LoadedModel", "ModelLoadError",
    "PJudgeError", "Request", "Result", "RunSpec", "Step", "Stream", "combine_preferences", "compare", "direct_prompt",
    "generate", "generate_many", "infer_persona", "load_model", "parse_specs", "persona_fit", "persona_judge", "prompt_ids",
    "prompt_text", "stream_compare", "stream_direct", "stream_generate", "stream_many", "stream_persona_judge",
]
