"""How much an answer loops: the share of its token n-grams that repeat an earlier one.

A fluent answer has almost none; a small model caught in a loop ("a canvas of a single canvas,
a canvas of a single canvas...") has half of them or more. The app shows it per panel, reports
list it per run spec, and a test keeps the app's default run below 10%.
"""

from __future__ import annotations

from collections.abc import Sequence


def repeated_ngram_share(token_ids: Sequence[int], n: int = 4) -> float:
    """(n-grams − distinct n-grams) / n-grams of the token ids; 0.0 for answers shorter than n."""
    grams = [tuple(token_ids[i:i + n]) for i in range(len(token_ids) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0
