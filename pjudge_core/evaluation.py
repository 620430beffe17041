"""Evaluation of batch outputs (paper Tables 1, 2, 4) and of a model's capacity as a judge (AlignX).

* `score_rm` — reward-model scores of every response (any AutoModelForSequenceClassification;
  a single logit is the reward, a vector needs ``dimension``; ArmoRM-style outputs with
  ``.rewards`` / ``.score`` are used when present). Per-method mean with a 95% t-interval and
  the paired difference (method A − method B over the prompt ids both have) with a paired
  t-interval.
* `judge_win_rate` — a local causal LM compares the two methods' responses for each prompt. No
  sampling: the judge's next-token probabilities of "1", "2" and "0" (tie), renormalised over
  these three, are read in both orders and averaged after mapping back to (A wins, tie, B wins);
  the largest of the three is the outcome, except that a win or loss the two orders disagree on
  (the judge picked a position, not a response) counts as a tie unless ``consistency=False``.
  Win/tie/loss rates come with 95% Wilson intervals.
* `alignment_accuracy` — AlignX's alignment accuracy: for each pair, the implicit reward
  r(y) = log p(y | persona, prompt) − log p(y | prompt), summed over the response tokens, with
  the prompts built by `prompting.prompt_ids` (exactly the prompts Persona-judge uses) and the
  response appended as the assistant's tokens with nothing after them. A pair is a win when
  r(chosen) > r(rejected), a loss when <, a tie when equal; accuracy = (wins + ties/2) / n, so
  swapping chosen and rejected gives exactly 1 − accuracy. Sequences are scored once each, in
  right-padded batches sorted by a key that does not depend on the chosen/rejected labels, so
  the swapped run sees bit-identical log-probabilities.

Functions return plain dicts (JSON); nothing here prints.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .errors import InputError, ModelLoadError

# --------------------------------------------------------------------------- statistics


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean with a Student-t confidence interval (interval = None for fewer than two values)."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None, "sd": None}
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "low": None, "high": None, "sd": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "sd": sd}


def paired_difference(a: dict, b: dict, level: float = 0.95) -> dict:
    """a − b over the keys both have: mean difference, paired t-interval, two-sided p-value."""
    from scipy import stats

    keys = sorted(set(a) & set(b), key=str)
    diffs = [a[k] - b[k] for k in keys]
    out = mean_interval(diffs, level)
    out["p_value"] = None
    if len(diffs) >= 2 and out["sd"]:
        out["p_value"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return out


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval for a proportion (successes may be fractional: ties count ½)."""
    from scipy import stats

    if n == 0:
        return None, None
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------- batch records


def load_records(path: str | os.PathLike) -> list[dict]:
    from .batch import read_records

    records = read_records(path)
    if not records:
        raise InputError(f"{path} holds no records; run `python -m pjudge_core batch` first.")
    for n, rec in enumerate(records, 1):
        if not isinstance(rec.get("text"), str) or "method" not in rec or "id" not in rec:
            raise InputError(f"{path}: record {n} lacks id, method or text; is this a batch output file?")
    return records


def _methods(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in records))


def _pair_methods(records: list[dict], method_a: str | None, method_b: str | None) -> tuple[str, str]:
    present = _methods(records)
    a = method_a or ("persona-judge" if "persona-judge" in present else present[0])
    b = method_b or ("direct" if "direct" in present else next((m for m in present if m != a), None))
    for m in (a, b):
        if m is None or m not in present:
            raise InputError(f"Method {m!r} has no records; the file holds: {', '.join(present)}.")
    if a == b:
        raise InputError("Comparing a method with itself; the file needs two methods.")
    return a, b


# --------------------------------------------------------------------------- reward models


def load_reward_model(name: str, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False):
    """(model, tokenizer) of a sequence-classification reward model; `ModelLoadError` on failure."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .loading import _first_line, resolve_device, resolve_dtype

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
        raise ModelLoadError(f"Could not load reward model {name!r} from {where}: {_first_line(exc)}") from exc
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
             dimension: int | None = None, batch_size: int = 4, method_a: str | None = None,
             method_b: str | None = None, progress: Callable | None = None) -> dict:
    """Reward of every record, per-method means and the paired difference A − B."""
    scores = reward_scores(model, tokenizer, [(r["prompt"], r["text"]) for r in records],
                           dimension=dimension, batch_size=batch_size, progress=progress)
    by_method: dict[str, dict] = defaultdict(dict)
    for rec, s in zip(records, scores):
        by_method[rec["method"]][str(rec["id"])] = s
    result = {
        "kind": "rm", "metric": f"RM {rm_name}" + (f" [dim {dimension}]" if dimension is not None else ""),
        "rm": rm_name, "dimension": dimension,
        "by_method": {m: mean_interval(list(v.values())) for m, v in by_method.items()},
        "scores": [{"id": str(r["id"]), "method": r["method"], "score": s} for r, s in zip(records, scores)],
    }
    if len(by_method) >= 2:
        a, b = _pair_methods(records, method_a, method_b)
        result["paired"] = {"a": a, "b": b, **paired_difference(by_method[a], by_method[b])}
    return result


# --------------------------------------------------------------------------- pairwise judge

JUDGE_TEMPLATE = (
    "You compare two responses to the same request. Aspect to judge: {aspect}\n\n"
    "[Request]\n{prompt}\n\n[Response 1]\n{first}\n\n[Response 2]\n{second}\n\n"
    "Which response fits the aspect better? Answer with a single character: "
    "1 if Response 1 is better, 2 if Response 2 is better, 0 if they are equally good."
)


def _label_ids(tokenizer, label: str) -> list[int]:
    ids = set()
    for variant in (label, " " + label):
        enc = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if enc:
            # the variant is usable when its first token decodes to the label (possibly with a space)
            if tokenizer.decode(enc[:1]).strip() == label:
                ids.add(enc[0])
    if not ids:
        raise InputError(f"The judge's tokenizer has no single token for {label!r}; pick another judge model.")
    return sorted(ids)


def judge_prompt_ids(tokenizer, prompt: str, aspect: str, first: str, second: str) -> list[int]:
    content = JUDGE_TEMPLATE.format(aspect=aspect, prompt=prompt, first=first, second=second)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(f"{content}\nAnswer:", add_special_tokens=True)["input_ids"])


@torch.no_grad()
def judge_probs(lm, prompt: str, aspect: str, first: str, second: str) -> tuple[float, float, float]:
    """P("1"), P("2"), P("0") of the judge's next token, renormalised over those three labels."""
    tok = lm.tokenizer
    ids = judge_prompt_ids(tok, prompt, aspect, first, second)
    device = next(lm.model.parameters()).device
    logits = lm.model(torch.tensor([ids], device=device)).logits[0, -1].float()
    logp = torch.log_softmax(logits, -1)
    label_lp = torch.stack([torch.logsumexp(logp[_label_ids(tok, label)], 0) for label in ("1", "2", "0")])
    probs = torch.softmax(label_lp, 0).tolist()
    return probs[0], probs[1], probs[2]


def judge_win_rate(records: list[dict], lm, aspect: str, *, method_a: str | None = None,
                   method_b: str | None = None, consistency: bool = True,
                   progress: Callable | None = None) -> dict:
    """Win/tie/loss of method A against method B, judged in both orders per prompt.

    The outcome is the largest of the order-averaged (win, tie, loss) probabilities; with
    ``consistency=True`` (default) a win or loss also needs both orders to pick the same
    response, otherwise it is a tie (small judges mostly answer by position: "1" in both orders).
    """
    if not aspect or not aspect.strip():
        raise InputError("The aspect is empty; pass --aspect 'what the judge should look for'.")
    a, b = _pair_methods(records, method_a, method_b)
    texts: dict[str, dict[str, dict]] = defaultdict(dict)
    for rec in records:
        texts[str(rec["id"])][rec["method"]] = rec
    ids = [i for i, m in texts.items() if a in m and b in m]
    if not ids:
        raise InputError(f"No prompt has both a {a!r} and a {b!r} response.")
    per_prompt, counts = [], {"win": 0, "tie": 0, "loss": 0}
    for k, pid in enumerate(ids):
        ra, rb = texts[pid][a], texts[pid][b]
        p1, p2, p0 = judge_probs(lm, ra["prompt"], aspect, ra["text"], rb["text"])  # A first
        q1, q2, q0 = judge_probs(lm, ra["prompt"], aspect, rb["text"], ra["text"])  # B first
        win, loss, tie = (p1 + q2) / 2, (p2 + q1) / 2, (p0 + q0) / 2
        outcome = max((("win", win), ("tie", tie), ("loss", loss)), key=lambda kv: kv[1])[0]
        first = max((("win", p1), ("loss", p2), ("tie", p0)), key=lambda kv: kv[1])[0]
        second = max((("win", q2), ("loss", q1), ("tie", q0)), key=lambda kv: kv[1])[0]
        consistent_order = first == second
        if consistency and not consistent_order and outcome != "tie":
            outcome = "tie"  # the verdict follows the position, not the responses
        counts[outcome] += 1
        per_prompt.append({"id": pid, "outcome": outcome, "p_win": win, "p_tie": tie, "p_loss": loss,
                           "order_ab": [p1, p2, p0], "order_ba": [q1, q2, q0], "consistent": consistent_order})
        if progress:
            progress(k + 1, len(ids))
    n = len(ids)
    rates = {}
    for key, count in counts.items():
        low, high = wilson(count, n)
        rates[key] = {"count": count, "rate": count / n, "low": low, "high": high}
    return {"kind": "judge", "metric": f"judge {lm.name}", "judge": lm.name, "aspect": aspect,
            "a": a, "b": b, "n": n, "consistency": consistency, **rates,
            "position_consistent": sum(p["consistent"] for p in per_prompt) / n,
            "mean_p_win": sum(p["p_win"] for p in per_prompt) / n,
            "mean_p_loss": sum(p["p_loss"] for p in per_prompt) / n,
            "per_prompt": per_prompt}


# --------------------------------------------------------------------------- alignment accuracy


def load_pairs(path: str | os.PathLike, *, limit: int | None = None, seed: int | None = None) -> list[dict]:
    """AlignX-style pairs {prompt, chosen, rejected, ground_truth_persona}; a random sample with seed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Pairs file {str(path)!r} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        data = None
    if data is None:  # JSONL
        data = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: line {n}: invalid JSON ({exc.msg}).") from exc
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty list of preference pairs.")
    pairs = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(f"{path}: item {i} is not an object.")
        for key in ("prompt", "chosen", "rejected", "ground_truth_persona"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise InputError(f"{path}: item {i} lacks a non-empty {key!r}.")
        pairs.append({k: rec[k] for k in ("prompt", "chosen", "rejected", "ground_truth_persona")} | {"index": i})
    if limit is not None and limit < 1:
        raise InputError("--limit must be at least 1.")
    if seed is not None:
        pairs = random.Random(seed).sample(pairs, min(limit or len(pairs), len(pairs)))
    elif limit is not None:
        pairs = pairs[:limit]
    return pairs


@torch.no_grad()
def sequence_logprobs(lm, items: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int = 8,
                      progress: Callable | None = None) -> list[float]:
    """Sum of log p(response tokens | prompt tokens) for each (prompt_ids, response_ids).

    Duplicate items are scored once. Items are sorted by (length, tokens), padded on the right
    with an attention mask, and run several per forward; log-softmax in float32, only over the
    positions that predict response tokens.
    """
    keys = [(tuple(p), tuple(r)) for p, r in items]
    unique = sorted(set(keys), key=lambda k: (len(k[0]) + len(k[1]), k))
    model = lm.model
    device = next(model.parameters()).device
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    context = lm.context_length
    values: dict = {}
    batch_size = max(1, int(batch_size))
    for start in range(0, len(unique), batch_size):
        chunk = unique[start:start + batch_size]
        seqs = [list(p) + list(r) for p, r in chunk]
        width = max(len(s) for s in seqs)
        if context and width > context:
            raise InputError(f"A prompt plus response is {width} tokens, longer than the model's context of {context}.")
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        # Positions whose next-token prediction is a response token: [len(prompt) - 1, len(seq) - 1).
        first = min(len(p) for p, _ in chunk) - 1
        last = width - 1
        keep = torch.arange(first, last, device=device)
        try:
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep).logits
        except TypeError:  # a model without logits_to_keep
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        if logits.shape[1] != last - first:  # the keyword was ignored: all positions came back
            logits = logits[:, first:last]
        logp = torch.log_softmax(logits.float(), -1)
        targets = ids[:, first + 1:last + 1].to(device)
        token_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (rows, last - first)
        for row, (p, r) in enumerate(chunk):
            lo = len(p) - 1 - first
            values[(p, r)] = float(token_lp[row, lo:lo + len(r)].double().sum())
        if progress:
            progress(min(start + batch_size, len(unique)), len(unique))
    return [values[k] for k in keys]


def alignment_accuracy(lm, pairs: list[dict], *, batch_size: int = 8, progress: Callable | None = None) -> dict:
    """AlignX alignment accuracy of `lm` as an implicit judge (see the module docstring)."""
    from .prompting import prompt_ids

    if not pairs:
        raise InputError("There are no preference pairs to score.")
    tok = lm.tokenizer
    items, plan = [], []
    for pair in pairs:
        cond = prompt_ids(tok, pair["prompt"], [pair["ground_truth_persona"]])
        plain = prompt_ids(tok, pair["prompt"], [])
        chosen = tok(pair["chosen"], add_special_tokens=False)["input_ids"]
        rejected = tok(pair["rejected"], add_special_tokens=False)["input_ids"]
        if not chosen or not rejected:
            raise InputError(f"Pair {pair.get('index', '?')} has an empty chosen or rejected response.")
        plan.append(len(items))
        items += [(cond, chosen), (plain, chosen), (cond, rejected), (plain, rejected)]
    lps = sequence_logprobs(lm, items, batch_size=batch_size, progress=progress)
    per_pair, by_persona = [], defaultdict(list)
    for pair, at in zip(pairs, plan):
        r_chosen = lps[at] - lps[at + 1]
        r_rejected = lps[at + 2] - lps[at + 3]
        outcome = "win" if r_chosen > r_rejected else "loss" if r_chosen < r_rejected else "tie"
        per_pair.append({"index": pair.get("index"), "persona": pair["ground_truth_persona"],
                         "r_chosen": r_chosen, "r_rejected": r_rejected, "outcome": outcome})
        by_persona[pair["ground_truth_persona"]].append(outcome)
    summary = _accuracy([p["outcome"] for p in per_pair])
    summary["by_persona"] = {persona: _accuracy(outcomes) for persona, outcomes in by_persona.items()}
    summary["model"] = lm.name
    summary["per_pair"] = per_pair
    summary["ties_count_half"] = True
    return summary


def _accuracy(outcomes: list[str]) -> dict:
    n = len(outcomes)
    wins, ties, losses = (outcomes.count(o) for o in ("win", "tie", "loss"))
    score = wins + ties / 2
    low, high = wilson(score, n)
    return {"accuracy": score / n if n else None, "n": n, "low": low, "high": high,
            "wins": wins, "ties": ties, "losses": losses}
