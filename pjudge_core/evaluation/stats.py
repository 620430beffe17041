"""Statistics for evaluation results: means with t-intervals, paired differences, Wilson intervals.

scipy is imported inside the functions: `scipy.stats` takes about a second to import and the
command line imports this module for every command, scoring or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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
