"""What a run decided, token by token, and the statistics derived from it.

A `Step` is one emitted token. For Persona-judge: which persona drafted its block, the judge's
probability p and the draft's probability q of the emitted token (both after the same warping;
q is None for a bonus token, which no draft proposed),
the uniform u of the acceptance test, and the decision. A resampled step also records the
rejected draft. Direct prompting records p = q = the probability of the token and
decision "sampled". Everything is plain data: `Result.to_dict()` is JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Step:
    index: int
    token_id: int
    text: str
    p: float
    q: float | None  # None for a bonus token: no draft distribution exists at that position
    decision: str  # "accepted" | "resampled" | "bonus" | "sampled" (direct prompting)
    block: int = 0
    drafter: str | None = None  # "A" | "B"; None for direct prompting
    u: float | None = None
    rejected_token_id: int | None = None
    rejected_text: str | None = None
    rejected_p: float | None = None
    rejected_q: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    method: str  # "persona-judge" | "direct"
    text: str
    token_ids: list[int]
    steps: list[Step]
    stats: dict
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "settings": dict(self.settings),
            "stats": dict(self.stats),
            "steps": [s.to_dict() for s in self.steps],
        }


def _rate(steps: list[Step]) -> float | None:
    """Share of judged drafts that were accepted (bonus tokens are not drafts)."""
    judged = [s for s in steps if s.decision in ("accepted", "resampled")]
    if not judged:
        return None
    return sum(s.decision == "accepted" for s in judged) / len(judged)


def run_stats(steps: list[Step], *, seconds: float, forward_passes: int, prompt_tokens: list[int],
              stopped_by: str) -> dict:
    stats = {
        "new_tokens": len(steps),
        "seconds": seconds,
        "tokens_per_s": len(steps) / seconds if seconds > 0 else None,
        "forward_passes": forward_passes,
        "prompt_tokens": prompt_tokens,
        "stopped_by": stopped_by,  # "eos" | "max_new_tokens"
    }
    if any(s.drafter for s in steps):
        stats.update(
            blocks=len({s.block for s in steps}),
            acceptance_rate=_rate(steps),
            acceptance_rate_by_drafter={d: _rate([s for s in steps if s.drafter == d]) for d in ("A", "B")},
            decisions={d: sum(s.decision == d for s in steps) for d in ("accepted", "resampled", "bonus")},
        )
    return stats
