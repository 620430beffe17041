"""Reward-model scores of batch outputs (paper Tables 1, 2, 4).

Any `AutoModelForSequenceClassification` works: a single logit is the reward, a vector needs
``dimension``; ArmoRM-style outputs with ``.rewards`` / ``.score`` are used when present.
`score_rm` gives per-spec means with 95% t-intervals and the paired difference (spec A − spec B
over the prompt ids both have) with a paired t-interval. Functions return plain dicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ...engine.loading import first_line, resolve_device, resolve_dtype
from ...errors import InputError, ModelLoadError
from ..runs.records import pair_specs, spec_key
from ..stats import mean_interval, paired_difference


def load_reward_model(name: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) of a sequence-classification reward model; `ModelLoadError` on failure."""
    if not str(name).strip():
        raise ModelLoadError("No reward model given; pass --rm with a hub id or a model folder.")
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(name).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise ModelLoadError(f"Could not load reward model {name!r}: the path holds no config.json.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if path.exists() else name, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path) if path.exists() else name, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except Exception as exc:
        where = "its folder" if path.exists() else "the Hugging Face hub"
        raise ModelLoadError(f"Could not load reward model {name!r} from {where}: {first_line(exc)}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def rm_text(tokenizer, prompt: str, response: str) -> str:
    """The conversation as the RM reads it: its chat template (user, assistant) or 'prompt\\n\\nresponse'."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False)
        except Exception:
            pass
    return f"{prompt}\n\n{response}"


def _reward_vector(output, dimension: int | None) -> torch.Tensor:
    rewards = getattr(output, "rewards", None)
    if rewards is not None and dimension is not None:
        return rewards.float()[:, dimension]
    score = getattr(output, "score", None)
    if isinstance(score, torch.Tensor) and dimension is None:
        return score.float().reshape(score.shape[0], -1)[:, 0]
    logits = output.logits.float() if hasattr(output, "logits") else output[0].float()
    logits = logits.reshape(logits.shape[0], -1)
    if logits.shape[1] == 1:
        return logits[:, 0]
    if dimension is None:
        raise InputError(f"The reward model returns {logits.shape[1]} values per response; pick one with --dimension.")
    if not 0 <= dimension < logits.shape[1]:
        raise InputError(f"--dimension {dimension} is out of range; the reward model returns {logits.shape[1]} values.")
    return logits[:, dimension]


@torch.no_grad()
def reward_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], *, dimension: int | None = None,
                  batch_size: int = 4, progress: Callable | None = None) -> list[float]:
    """Reward of each (prompt, response)."""
    texts = [rm_text(tokenizer, p, r) for p, r in pairs]
    has_template = bool(getattr(tokenizer, "chat_template", None))
    device = next(model.parameters()).device
    limit = getattr(tokenizer, "model_max_length", None)
    limit = limit if isinstance(limit, int) and limit < 1_000_000 else None
    scores: list[float] = []
    for start in range(0, len(texts), max(1, batch_size)):
        chunk = texts[start:start + max(1, batch_size)]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=not has_template,
                        truncation=limit is not None, max_length=limit)
        output = model(**{k: v.to(device) for k, v in enc.items()})
        scores.extend(_reward_vector(output, dimension).cpu().tolist())
        if progress:
            progress(len(scores), len(texts))
    return scores


def score_rm(records: list[dict], model, tokenizer, *, rm_name: str = "reward model",
             dimension: int | None = None, batch_size: int = 4, spec_a: str | None = None,
             spec_b: str | None = None, progress: Callable | None = None) -> dict:
    """Reward of every record, per-spec means and the paired difference A − B."""
    scores = reward_scores(model, tokenizer, [(r["prompt"], r["text"]) for r in records],
                           dimension=dimension, batch_size=batch_size, progress=progress)
    by_spec: dict[str, dict] = defaultdict(dict)
    for rec, s in zip(records, scores):
        by_spec[spec_key(rec)][str(rec["id"])] = s
    result = {
        "kind": "rm", "metric": f"RM {rm_name}" + (f" [dim {dimension}]" if dimension is not None else ""),
        "rm": rm_name, "dimension": dimension,
        "by_spec": {m: mean_interval(list(v.values())) for m, v in by_spec.items()},
        "scores": [{"id": str(r["id"]), "spec": spec_key(r), "score": s} for r, s in zip(records, scores)],
    }
    if len(by_spec) >= 2:
        a, b = pair_specs(records, spec_a, spec_b)
        result["paired"] = {"a": a, "b": b, **paired_difference(by_spec[a], by_spec[b])}
    return result
