"""Win rates against a baseline run spec on the same prompt: the paper's Table 2 arithmetic.

A *score* is one number per (run, prompt, run spec, objective) where higher is better for that
objective (a meter already turned by its direction, a persona fit); `paired_outcomes` pairs each
spec's score with the baseline's on the same run and prompt and counts a win, tie or loss.
A judge's verdicts arrive as outcomes directly. `win_rates` turns outcomes into counts and two
rates, each with a 95% Wilson interval: ties counted ½ (the symmetric rate: 0.5 means no
difference) and ties counted 0 (the paper's way: wins over all comparisons).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from ..stats import wilson

TIE_TOLERANCE = 1e-9  # equal up to float rounding: the same text scores the same
OUTCOMES = {"win": 1, "tie": 0, "loss": -1}  # a judge's verdict (`judges.pairwise`) as an outcome


def win_rates(outcomes: Sequence[int]) -> dict:
    """{wins, ties, losses, n, rate, low, high (ties count 0), rate_half, low_half, high_half}
    of outcomes +1 (win), 0 (tie), −1 (loss)."""
    wins = sum(o > 0 for o in outcomes)
    ties = sum(o == 0 for o in outcomes)
    losses = sum(o < 0 for o in outcomes)
    n = len(outcomes)
    low, high = wilson(wins, n)
    low_half, high_half = wilson(wins + ties / 2, n)
    return {"wins": wins, "ties": ties, "losses": losses, "n": n,
            "rate": wins / n if n else None, "low": low, "high": high,
            "rate_half": (wins + ties / 2) / n if n else None, "low_half": low_half, "high_half": high_half}


def judge_outcomes(result: Mapping) -> list[int]:
    """The outcomes of a judge's verdicts, one per prompt (`judges.pairwise.judge_win_rate`'s result)."""
    return [OUTCOMES[p["outcome"]] for p in result["per_prompt"]]


def outcome(score: float, baseline: float) -> int:
    diff = score - baseline
    return 0 if abs(diff) <= TIE_TOLERANCE else (1 if diff > 0 else -1)


def paired_outcomes(scores: Iterable[Mapping], baseline: str) -> dict[str, dict[str, list[int]]]:
    """{spec: {objective: [outcome, ...]}} of every non-baseline spec against `baseline`.

    `scores` are ``{"run", "id", "spec", "objective", "score"}`` (higher is better); a spec's
    score is compared with the baseline's of the same run, prompt id and objective. Scores that
    are None (a grade of an empty answer) and prompts without a baseline answer are left out.
    """
    table: dict[tuple, float] = {}
    for s in scores:
        if s["score"] is not None:
            table[(s["run"], str(s["id"]), s["objective"], s["spec"])] = float(s["score"])
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for (run, pid, objective, spec), score in table.items():
        if spec == baseline:
            continue
        base = table.get((run, pid, objective, baseline))
        if base is not None:
            out[spec][objective].append(outcome(score, base))
    return {spec: dict(by) for spec, by in out.items()}


def win_table(outcomes: Mapping[str, Mapping[str, Sequence[int]]]) -> dict[str, dict[str, dict]]:
    """{spec: {objective: win_rates(...)}}."""
    return {spec: {objective: win_rates(list(o)) for objective, o in by.items()} for spec, by in outcomes.items()}


def win_cell(d: dict | None, digits: int = 2) -> str:
    """A table cell: "0.48 [0.35, 0.62] 24/2/24" (win rate with ties counted 0, Wilson interval, W/T/L)."""
    if not d or not d["n"]:
        return "–"
    return (f"{d['rate']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}] "
            f"{d['wins']}/{d['ties']}/{d['losses']}")
