"""Figure 4: two threads classifying separate fd sets concurrently vs one thread.

Two fd sets of the same scenario (5,000 fds each, this process). Both ways do the same
work: each set classified ``REPEAT`` times, by one thread in turn (``1 thread``) or by
two pre-started worker threads at once (``2 threads``), interleaved round by round.
``classify_fds`` releases the GIL, so with two idle cores the ratio of the medians
(the throughput ratio) can approach 2; other load on the machine lowers it. As a
control, the same is measured for hashlib.sha256 over 8 MiB buffers (which also releases
the GIL): it shows how much parallelism the machine offered at that moment.
"""

from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kcmp_rs
import pytest
from _benchlib import RESULTS, FdSet, FileSet, fd_set, fmt_time, interleaved, ratio

N = 5_000
REPEAT = 3


CONTROL = bytes(8 << 20)


def control() -> None:
    hashlib.sha256(CONTROL).digest()


def work(s: FdSet) -> None:
    for _ in range(REPEAT):
        assert kcmp_rs.classify_fds(s.pid, s.fds) == s.truth


@pytest.mark.parametrize("scenario", ["distinct", "one-inode", "mix"])
def test_threads(benchmark: Any, files: FileSet, scenario: str) -> None:
    benchmark.group = "threads (one round: 1 thread + 2 threads + controls)"
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

        def control_one() -> None:
            control()
            control()

        def control_two() -> None:
            for f in [pool.submit(control), pool.submit(control)]:
                f.result()

        _, medians = interleaved(
            benchmark,
            {"1": one, "2": two, "c1": control_one, "c2": control_two},
            budget=3.0,
            min_rounds=5,
        )
    x = ratio(medians["1"], medians["2"])
    c = ratio(medians["c1"], medians["c2"])
    assert x is not None and c is not None
    RESULTS.add(
        "4 two threads vs one",
        f"{scenario}, 2 x {N} fds (self)",
        f"{x:.2f}x throughput (1 thread {fmt_time(medians['1'])}, 2 threads "
        f"{fmt_time(medians['2'])} per {2 * REPEAT} classifications); "
        f"control sha256 2 threads vs 1: {c:.2f}x",
    )
