"""Percentiles and millisecond cells of bench/fanout.py's report, shared with its scale-out
part (bench/_fanout_cluster.py)."""

from __future__ import annotations

import math


def pct(ordered: list[float], p: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]  # nearest rank


def ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"
