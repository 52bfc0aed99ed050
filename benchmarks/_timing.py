"""Timing helpers shared by the benchmark scripts: median of repeated runs, ratios."""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable


def per_call(fn: Callable[[], object], *, number: int = 2000, repeat: int = 7) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` runs of ``number`` calls."""
    fn()  # warm up
    return statistics.median(t / number for t in timeit.repeat(fn, number=number, repeat=repeat))


def row(label: str, seconds: float, baseline: float) -> str:
    return f"{label:<48} {seconds * 1e6:10.2f} us   {seconds / baseline:6.2f}x"
