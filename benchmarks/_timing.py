"""Timing helpers shared by the benchmark scripts: medians of repeated runs, ratios.

:func:`compare` interleaves its candidates with the baseline, round after round, and
reports the median of the per-round ratios: load on a shared machine then slows both
sides of a ratio alike, where timing one after the other lets it fall on one side.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable, Mapping


def per_call(fn: Callable[[], object], *, number: int = 2000, repeat: int = 7) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` runs of ``number`` calls."""
    fn()  # warm up
    return statistics.median(t / number for t in timeit.repeat(fn, number=number, repeat=repeat))


def row(label: str, seconds: float, baseline: float) -> str:
    return f"{label:<60} {seconds * 1e6:10.2f} us   {seconds / baseline:6.2f}x"


def compare(
    baseline: tuple[str, Callable[[], object]],
    candidates: Mapping[str, Callable[[], object]],
    *,
    number: int = 500,
    rounds: int = 15,
) -> list[str]:
    """Rows of ``label, median time, median ratio to the baseline``, timed in interleaved rounds."""
    functions = {baseline[0]: baseline[1], **candidates}
    for fn in functions.values():
        fn()  # warm up
    times: dict[str, list[float]] = {label: [] for label in functions}
    for _ in range(rounds):
        for label, fn in functions.items():
            times[label].append(timeit.timeit(fn, number=number) / number)
    base = times[baseline[0]]
    lines = []
    for label, measured in times.items():
        ratio = statistics.median(m / b for m, b in zip(measured, base))
        lines.append(f"{label:<60} {statistics.median(measured) * 1e6:10.2f} us   {ratio:6.2f}x")
    return lines
