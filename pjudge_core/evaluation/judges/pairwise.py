"""Pairwise win rate of one run spec against another, judged by a local causal LM.

No sampling: the judge's next-token probabilities of "1", "2" and "0" (tie), renormalised over
these three, are read in both orders and averaged after mapping back to (A wins, tie, B wins);
the largest of the three is the outcome, except that a win or loss the two orders disagree on
(the judge picked a position, not a response) counts as a tie unless ``consistency=False``.
Win/tie/loss rates come with 95% Wilson intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from ...errors import InputError
from ..runs.records import pair_specs, spec_key
from ..stats import wilson

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


def judge_win_rate(records: list[dict], lm, aspect: str, *, spec_a: str | None = None,
                   spec_b: str | None = None, consistency: bool = True,
                   progress: Callable | None = None) -> dict:
    """Win/tie/loss of method A against method B, judged in both orders per prompt.

    The outcome is the largest of the order-averaged (win, tie, loss) probabilities; with
    ``consistency=True`` (default) a win or loss also needs both orders to pick the same
    response, otherwise it is a tie (small judges mostly answer by position: "1" in both orders).
    """
    if not aspect or not aspect.strip():
        raise InputError("The aspect is empty; pass --aspect 'what the judge should look for'.")
    a, b = pair_specs(records, spec_a, spec_b)
    texts: dict[str, dict[str, dict]] = defaultdict(dict)
    for rec in records:
        texts[str(rec["id"])][spec_key(rec)] = rec
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
