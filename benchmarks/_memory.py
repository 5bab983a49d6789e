"""
Peak memory of one call, for the benchmarks: the resident set sampled every 2 ms while the call runs. (The
process's ``ru_maxrss`` is a lifetime peak: loading the data or training usually sets it before the call does.)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable


def rss() -> int:
    """:return: The resident set of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(fn: Callable[[], Any]) -> tuple[int, int]:
    """
    :param fn: The call to measure.
    :return: The resident set before ``fn`` and its largest value while ``fn`` ran (sampled every 2 ms), bytes.
    """
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return base, max(peak[0], rss())
