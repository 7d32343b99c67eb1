"""Figure 13: what one metrics collection costs (issue 23), on the 1,000-process family
of figure 10 (``test_scan_family.issue_family``).

``kcmp_rs.metrics(pids)`` in this process, CPU seconds (user + system of every thread
of the process, from ``getrusage``) and wall time, medians of 3. A collection every
60 s must average under 5% of one core: at most 3 CPU seconds per collection. The
collection must see the family whole (nothing skipped, every inherited pipe shared).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from typing import Any

import kcmp_rs
from _benchlib import RESULTS, fmt_time
from test_scan_family import N_PROCS, PIPES, issue_family

RUNS = 3
INTERVAL = 60.0
BUDGET = 0.05  # of one core, at one collection per INTERVAL


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_one_collection_over_the_family(benchmark: Any) -> None:
    benchmark.group = "metrics"
    with tempfile.NamedTemporaryFile() as own, issue_family(own.name) as pids:
        first = kcmp_rs.metrics(pids)
        assert first.value("processes_scanned") == N_PROCS
        assert first.value("processes_skipped") == 0
        # Each inherited pipe end is one description all the family holds.
        assert first.value("shared_descriptions", type="FIFO") >= 2 * PIPES
        cpu, wall = [], []
        for _ in range(RUNS):
            c0, t0 = _cpu(), time.perf_counter()
            kcmp_rs.metrics(pids)
            wall.append(time.perf_counter() - t0)
            cpu.append(_cpu() - c0)
        benchmark.pedantic(lambda: kcmp_rs.metrics(pids), rounds=1, iterations=1)
    seconds = statistics.median(cpu)
    share = seconds / INTERVAL
    RESULTS.add(
        "13 metrics collection",
        f"{N_PROCS} procs x about 230 fds, every {INTERVAL:.0f} s",
        f"{seconds:.2f} CPU s, {fmt_time(statistics.median(wall))} wall "
        f"(median of {RUNS}): {share:.1%} of a core",
        f"< {BUDGET:.0%} of a core",
        share < BUDGET,
    )
