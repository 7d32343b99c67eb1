"""Figure 2: one ``kcmp()`` call, native vs the ctypes baseline, both returning ``Order``.

Both compare the two ends of a pipe of this process (KCMP_FILE, an unequal pair), so
each call reaches the kernel and answers LESS or GREATER. Interleaved in batches.
"""

from __future__ import annotations

import os
from typing import Any

import kcmp_rs
from _benchlib import RESULTS, fmt_time, interleaved, ratio
from kcmp_rs import KcmpType, Order, baseline

TARGET = 1.5


def test_kcmp_call(benchmark: Any) -> None:
    pid = os.getpid()
    a, b = os.pipe()
    try:
        benchmark.group = "single kcmp() (one round: native + ctypes batches)"
        results, medians = interleaved(
            benchmark,
            {
                "native": lambda: kcmp_rs.kcmp(pid, pid, KcmpType.FILE, a, b),
                "baseline": lambda: baseline.kcmp(pid, pid, KcmpType.FILE, a, b),
            },
            budget=2.0,
            min_rounds=20,
        )
    finally:
        os.close(a)
        os.close(b)
    for result in results.values():
        assert isinstance(result, Order)
        assert result in (Order.LESS, Order.GREATER)
    assert results["native"] == results["baseline"]
    native, base = medians["native"], medians["baseline"]
    x = ratio(base, native)
    assert x is not None
    RESULTS.add(
        "2 single kcmp()",
        "native vs ctypes, same pid, FILE",
        f"{x:.2f}x ({fmt_time(native)} vs {fmt_time(base)} per call)",
        f">= {TARGET}x",
        x >= TARGET,
    )
