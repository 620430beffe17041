"""One model, several threads: their forwards take turns, first come, first served.

A shared app runs the batched engine in its own thread while visitors' handlers score answers
(persona fit), infer personas or measure judge capacity in theirs, all on the same weights. Two
forwards at once would each spread over every core and slow both (and the decoding steps of
everybody); one forward at a time, in arrival order, keeps the engine stepping between a scorer's
forwards, so a long scoring job delays each decoding step by at most one of its forwards instead of
stopping decoding until it ends.

`ForwardTurns(lm)` hooks the model's decoder stack: every forward, from any thread and any code
(the engine, the prefix-tree scorer, transformers' own `generate`), waits for its turn before it
starts and hands the turn on when it ends, also when it raises. `install(lm)` does it once per
model.
"""

from __future__ import annotations

import threading

_INSTALLED = "_pjudge_forward_turns"


class ForwardTurns:
    """A ticket lock around every forward of one module (see the module docstring)."""

    def __init__(self, module):
        self._changed = threading.Condition()
        self._issued = 0  # turns handed out
        self._serving = 0  # the turn allowed to run
        self._owner = threading.local()  # a thread already inside a forward runs nested calls at once
        self._hooks = (module.register_forward_pre_hook(self._enter),
                       module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module, args) -> None:
        depth = getattr(self._owner, "depth", 0)
        self._owner.depth = depth + 1
        if depth:
            return
        with self._changed:
            turn = self._issued
            self._issued += 1
            self._changed.wait_for(lambda: self._serving == turn)

    def _leave(self, module, args, output) -> None:
        self._owner.depth -= 1
        if self._owner.depth:
            return
        with self._changed:
            self._serving += 1
            self._changed.notify_all()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()


def install(lm) -> ForwardTurns:
    """The model's `ForwardTurns`, installed on its decoder stack the first time."""
    model = lm.model
    turns = getattr(model, _INSTALLED, None)
    if turns is None:
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        turns = ForwardTurns(decoder)
        setattr(model, _INSTALLED, turns)
    return turns
