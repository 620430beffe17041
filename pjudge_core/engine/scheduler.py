"""Which rows share a forward: feeds of similar width together, cut where padding costs more than a forward.

A forward's cost on this project's CPU is roughly a fixed part (every weight streamed from memory)
plus a part per position fed, padding included. Rows that feed one token (drafting, direct
prompting, fusion) and rows that judge a block of λ drafts, or feed a whole prompt, would pad each
other; `cut_batches` sorts the widths and cuts them into consecutive groups that minimise
Σ (rows × widest + `FORWARD_OVERHEAD`), which in practice is one forward per kind of work:
every one-token row together, every judging row together, prompts apart.
"""

from __future__ import annotations

from collections.abc import Sequence

# What one more forward costs, in padded positions. Measured with SmolLM2-135M in float32 on this
# project's 2-core CPU (engine forwards over 200 cached tokens): a forward costs about
# 50 ms + 2 ms per row + 1 ms per padded position (1 row x 1 token 53 ms, 16 x 1 104 ms,
# 16 x 6 178 ms, 32 x 6 322 ms): a forward's fixed cost is worth ~48 positions.
FORWARD_OVERHEAD = 48
MAX_POSITIONS = 8192  # positions in one forward: bounds the activations of batched prompts


def cut_batches(widths: Sequence[int], overhead: float = FORWARD_OVERHEAD, max_rows: int | None = None,
                max_positions: int | None = None) -> list[tuple[int, int]]:
    """[(start, end)] cutting `widths` (sorted ascending) into consecutive batches at the points that
    minimise Σ (rows × widest + overhead), each batch at most `max_rows` rows and (unless it is a
    single row) at most `max_positions` padded positions."""
    n = len(widths)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(0 if max_rows is None else max(0, j - max_rows), j):
            rows = j - i
            if max_positions is not None and rows > 1 and rows * widths[j - 1] > max_positions:
                continue
            cost = best[i] + rows * widths[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j:
        batches.append((cut[j], j))
        j = cut[j]
    return batches[::-1]


def plan_forwards(widths: Sequence[int], slots: Sequence[int], max_rows: int | None = None) -> list[list[int]]:
    """Indices of the feeds of each forward (feed i is `widths[i]` tokens wide, in slot `slots[i]`);
    within a forward the rows are in slot order, so consecutive slots are read without a copy."""
    order = sorted(range(len(widths)), key=lambda i: (widths[i], slots[i]))
    batches = cut_batches([widths[i] for i in order], max_rows=max_rows, max_positions=MAX_POSITIONS)
    return [sorted(order[a:b], key=lambda i: slots[i]) for a, b in batches]
