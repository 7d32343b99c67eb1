"""Figure 4: two threads classifying separate fd sets concurrently vs one thread.

Two fd sets of the same scenario (5,000 fds each, this process). Both ways do the same
work: each set classified ``REPEAT`` times, by one thread in turn (``1 thread``) or by
two pre-started worker threads at once (``2 threads``), interleaved round by round.
``classify_fds`` releases the GIL, so with two idle cores the ratio of the medians
(the throughput ratio) can approach 2; other load on the machine lowers it.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kcmp_rs
import pytest
from _benchlib import RESULTS, FdSet, FileSet, fd_set, fmt_time, interleaved, ratio

N = 5_000
REPEAT = 3


def work(s: FdSet) -> None:
    for _ in range(REPEAT):
        assert kcmp_rs.classify_fds(s.pid, s.fds) == s.truth


@pytest.mark.parametrize("scenario", ["distinct", "one-inode", "mix"])
def test_threads(benchmark: Any, files: FileSet, scenario: str) -> None:
    benchmark.group = "threads (one round: 1 thread + 2 threads)"
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(fd_set(scenario, "self", N, files))
        b = stack.enter_context(fd_set(scenario, "self", N, files))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=2))
        list(pool.map(lambda _: None, range(2)))  # both workers started before timing

        def one() -> None:
            work(a)
            work(b)

        def two() -> None:
            for f in [pool.submit(work, a), pool.submit(work, b)]:
                f.result()

        _, medians = interleaved(benchmark, {"1": one, "2": two}, budget=3.0, min_rounds=5)
    x = ratio(medians["1"], medians["2"])
    assert x is not None
    RESULTS.add(
        "4 two threads vs one",
        f"{scenario}, 2 x {N} fds (self)",
        f"{x:.2f}x throughput (1 thread {fmt_time(medians['1'])}, 2 threads "
        f"{fmt_time(medians['2'])} per {2 * REPEAT} classifications)",
    )
