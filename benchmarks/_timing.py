"""Wall-clock timing of one call, for the benchmarks."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """
    :param fn: The call to time.
    :param repeats: How many times to run it.
    :return: The fastest run's seconds and the last run's output.
    """
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out
