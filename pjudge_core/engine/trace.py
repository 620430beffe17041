"""What a run decided, token by token, and the statistics derived from it.

A `Step` is one emitted token. Personas are labelled "A", "B", "C", "D" in the order given.
  * Persona-judge (and the official-code behaviour): which persona drafted the token's block
    (`drafter`) and which judged it (`judge`), the judge's probability p and the draft's
    probability q of the emitted token (both after the same processing; q is None for a bonus
    token, which no draft proposed), the uniform u of the acceptance test, and the decision
    ("accepted", "resampled", "bonus"). A resampled step also records the rejected draft.
  * Direct prompting: p = q = the probability of the token, decision "sampled".
  * Fusion: p = the fused distribution's probability of the token, `persona_p` = each persona's
    own probability of it under the same processing, decision "fused".
Everything is plain data: `Result.to_dict()` is JSON.

`Trace` turns a run's decisions into Steps (incremental detokenisation, the stop rule) and keeps
them, the only copy, until it builds the `Result`; `Stream` is what every `stream_*` function
returns.

The stop rule: a run ends at end-of-sequence, after ``max_new_tokens``, or at the token whose text
completes one of the settings' stop strings. Then the `Result`'s text ends before that string (its
steps and token ids keep the token that completed it), ``stats["stopped_by"]`` is ``"stop"`` and
``stats["stop"]`` names the string and the tokens dropped: drafts of the same Persona-judge block,
after that token, which the judge had already scored (accepted or not, they are not part of the answer).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from transformers import PreTrainedTokenizerFast

from .sampling import DECISIONS, JudgedToken

__all__ = ["DECISIONS", "Holdback", "Result", "Step", "Stream", "Trace"]


@dataclass
class Step:
    index: int
    token_id: int
    text: str
    p: float
    q: float | None  # None for a bonus token: no draft distribution exists at that position
    decision: str  # one of DECISIONS
    block: int = 0
    drafter: str | None = None  # persona label; None unless Persona-judge
    judge: str | None = None
    u: float | None = None
    rejected_token_id: int | None = None
    rejected_text: str | None = None
    rejected_p: float | None = None
    rejected_q: float | None = None
    persona_p: dict[str, float] | None = None  # fusion: each persona's probability of the token

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    method: str  # the name of a registered method (`methods.METHODS`)
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
              stopped_by: str, labels: list[str] = (), compute_seconds: float | None = None) -> dict:
    stats = {
        "new_tokens": len(steps),
        "seconds": seconds,  # from admission to the last token: what the user waited
        "compute_seconds": compute_seconds,  # this run's share of the machine (see engine.Job)
        "tokens_per_s": len(steps) / seconds if seconds > 0 else None,
        "forward_passes": forward_passes,
        "prompt_tokens": prompt_tokens,
        "stopped_by": stopped_by,  # "eos" | "stop" | "max_new_tokens"
    }
    if any(s.drafter for s in steps):
        drafters = [label for label in labels if any(s.drafter == label for s in steps)]
        stats.update(
            blocks=len({s.block for s in steps}),
            acceptance_rate=_rate(steps),
            acceptance_rate_by_drafter={d: _rate([s for s in steps if s.drafter == d]) for d in drafters},
            decisions={d: sum(s.decision == d for s in steps) for d in ("accepted", "resampled", "bonus")},
        )
    return stats


def _decoder(tokenizer):
    """`tokenizer.decode(ids, skip_special_tokens=True)`, straight from the Rust tokenizer where transformers'
    wrapper adds nothing to it (its own `_decode`, no clean-up of spaces): the wrapper's Python costs
    about 10 µs a call, twice per token of every request."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if (backend is not None and type(tokenizer)._decode is PreTrainedTokenizerFast._decode
            and not getattr(tokenizer, "clean_up_tokenization_spaces", False)):
        return lambda ids: backend.decode(ids, skip_special_tokens=True)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


class IncrementalDetokenizer:
    """Text of each new token, holding back incomplete UTF-8 sequences (prefix/read offsets)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self._decode = _decoder(tokenizer)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""

    def flush(self) -> str:
        """Whatever push() held back (an unfinished character at the very end)."""
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        return self._decode(self.ids[self.prefix_offset:])[len(prefix):]


class Stream:
    """Iterate to get Steps as they are decided; `.result` is set when the run has finished.

    `close()` stops the run where it is (the generator's cleanup runs; no more forwards).
    """

    def __init__(self, steps: Iterator[Step], method: str = "", settings: dict | None = None):
        self._steps = steps
        self.method = method
        self.settings = settings or {}
        self.result: Result | None = None

    def __iter__(self) -> Iterator[Step]:
        self.result = yield from self._steps

    def __next__(self) -> Step:
        """One step (for interleaving several streams); StopIteration sets `.result`."""
        try:
            return next(self._steps)
        except StopIteration as stop:
            self.result = stop.value
            raise

    def close(self) -> None:
        self._steps.close()

    def run(self) -> Result:
        for _ in self:
            pass
        return self.result


class Trace:
    """What one run decided, shared by every method: its steps (token text, p, q, decision), the stop
    rule, and the `Result` they make. `record` is the run's description (method, model, query,
    preferences, settings, seed, prompts, method options) that the Result carries as its settings."""

    def __init__(self, lm, method: str, record: dict, labels: list[str], ignore_eos: bool = False,
                 stop: tuple[str, ...] = ()):
        self.lm = lm
        self.method = method
        self.record = record
        self.labels = labels
        self.ignore_eos = ignore_eos
        self.detok = IncrementalDetokenizer(lm.tokenizer)
        self.steps: list[Step] = []
        self.stop = stop  # the stop strings (`DecodeSettings.stop`)
        self.text = ""  # the steps' text so far, kept only when there are stop strings
        self.stopped: tuple[int, str] | None = None  # (where in `text`, which string) once one is completed
        self.dropped: list[int] = []  # the block's later drafts, when a stop string ended a block early

    def step(self, judged: JudgedToken, p: float, q: float | None, rejected: tuple[float, float] | None = None,
             **fields) -> Step:
        """The emitted token's Step: `p` and `q` are its probabilities (`Step`), `rejected` the rejected
        draft's (p, q) when the token was resampled."""
        token = judged.token_id
        step = Step(
            index=len(self.steps),
            token_id=token,
            text=self.detok.push(token),
            p=p,
            q=q,
            decision=judged.decision,
            u=None if judged.u is None else float(judged.u),
            **fields,
        )
        if judged.rejected_token_id is not None:
            step.rejected_token_id = judged.rejected_token_id
            step.rejected_text = self.lm.tokenizer.decode([judged.rejected_token_id])
            step.rejected_p, step.rejected_q = rejected
        self.steps.append(step)
        if self.stop:
            self._find_stop(step.text)
        return step

    def _find_stop(self, text: str) -> None:
        """Look for a stop string ending in the new text (the earliest one, if several end in it)."""
        start = max(0, len(self.text) - max(map(len, self.stop)) + 1)
        self.text += text
        found = [(at, s) for s in self.stop if (at := self.text.find(s, start)) >= 0]
        if found:
            self.stopped = min(found)

    def is_eos(self, token_id: int) -> bool:
        return not self.ignore_eos and token_id in self.lm.eos_token_ids

    def ends(self, token_id: int) -> bool:
        """Whether the answer ends with this just-emitted token: end-of-sequence, or a stop string completed."""
        return self.stopped is not None or self.is_eos(token_id)

    def finished(self, output: list[int], max_new_tokens: int) -> bool:
        return len(output) >= max_new_tokens or bool(output and self.ends(output[-1]))

    def result(self, prompts: list[list[int]], *, seconds: float, forward_passes: int,
               compute_seconds: float) -> Result:
        """The run's `Result`, with the engine's figures for it (see `engine.Job`)."""
        ids = [s.token_id for s in self.steps]
        last = ids[-1] if ids else None
        stopped_by = ("stop" if self.stopped is not None else
                      "eos" if last is not None and self.is_eos(last) else "max_new_tokens")
        stats = run_stats(
            self.steps,
            seconds=seconds,
            forward_passes=forward_passes,
            compute_seconds=compute_seconds,
            prompt_tokens=[len(p) for p in prompts],
            stopped_by=stopped_by,
            labels=self.labels,
        )
        if self.stopped is not None:
            at, string = self.stopped
            stats["stop"] = {"string": string, "dropped_token_ids": list(self.dropped)}
            text = self.text[:at]  # the text streamed so far, cut before the stop string
        else:
            if self.steps:
                self.steps[-1].text += self.detok.flush()
            text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        return Result(self.method, text, ids, self.steps, stats, self.record)


class Holdback:
    """What of a growing answer may be shown while it streams: never a stop string, nor the start of
    one that the next token may complete (those characters wait; the final `Result.text` decides)."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop, self.text, self.sent = stop, "", 0

    def push(self, text: str) -> str:
        """Add a step's text; the part that is now safe to send."""
        self.text += text
        safe = len(self.text)
        for s in self.stop:
            at = self.text.find(s)
            if at >= 0:
                safe = min(safe, at)
            for k in range(min(len(s) - 1, len(self.text)), 0, -1):  # a suffix that begins s
                if self.text.endswith(s[:k]):
                    safe = min(safe, len(self.text) - k)
                    break
        return self._send(safe)

    def finish(self, final: str) -> str:
        """The rest of the final answer (`Result.text`), once the run is over."""
        self.text = final  # the steps' texts add up to it (`trace.Trace`), so what was sent is its prefix
        return self._send(len(final))

    def _send(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent:upto], upto
        return out

