"""Intervals and paired differences used by every evaluation."""

import pytest

from pjudge_core.evaluation.stats import mean_interval, paired_difference, wilson


def test_statistics():
    m = mean_interval([1.0, 2.0, 3.0])
    assert m["mean"] == 2.0 and m["low"] < 2.0 < m["high"]
    assert mean_interval([5.0])["low"] is None
    d = paired_difference({"a": 2.0, "b": 3.0, "c": 5.0, "x": 9.0}, {"a": 1.0, "b": 1.5, "c": 3.5})
    assert d["n"] == 3 and d["mean"] == pytest.approx(4 / 3) and d["p_value"] is not None
    low, high = wilson(8, 10)
    assert 0.4 < low < 0.8 < high < 1.0
    assert wilson(0, 0) == (None, None)
