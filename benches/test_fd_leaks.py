"""Figure 8: what ``pytest --fd-leaks`` costs per test (issue 12).

The check the plugin runs around each test (``FdLeakCheck`` around an empty body: a
snapshot of the fd table and the descendants, then the comparison) in this process
with 10, 100 and 1,000 open fds (pipe ends and /dev/null opens, beside what the
process already has). Target: under 1 ms per test at 100 fds. Also timed: the same
at 100 fds when the body leaves a dup of an fd open before (the kcmp path, and
describing the leak).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _benchlib import RESULTS, fmt_time, measure
from kcmp_rs import FdLeakCheck, FdLeaks, open_fds

SIZES = (10, 100, 1000)
TARGET_AT = 100
TARGET_SECONDS = 1e-3
FIGURE = "9 fd-leak check per test"


@contextlib.contextmanager
def fds_open(n: int) -> Iterator[int]:
    """Opens fds until this process has ``n`` (none if it has that many already);
    yields the count reached."""
    me = os.getpid()
    opened: list[int] = []
    try:
        while len(open_fds(me)) < n:
            if n - len(open_fds(me)) >= 2:
                opened.extend(os.pipe())
            opened.append(os.open(os.devnull, os.O_RDONLY))
        yield len(open_fds(me))
    finally:
        for fd in opened:
            os.close(fd)


def checked(check: FdLeakCheck, body: Callable[[], None]) -> FdLeaks:
    with check:
        body()
    return check.leaks


@pytest.mark.parametrize("n", SIZES)
def test_check_around_an_empty_body(benchmark: Any, n: int) -> None:
    check = FdLeakCheck()
    with fds_open(n) as count:
        leaks, t = measure(benchmark, lambda: checked(check, lambda: None))
    assert leaks.clean, leaks.report()
    targeted = n == TARGET_AT
    RESULTS.add(
        FIGURE,
        f"{count} open fds, empty body",
        fmt_time(t),
        f"< {fmt_time(TARGET_SECONDS)}" if targeted else "",
        (t < TARGET_SECONDS) if targeted else None,
    )


def test_check_finding_a_leaked_dup(benchmark: Any) -> None:
    check = FdLeakCheck()
    leaked: list[int] = []

    def dup_stdout() -> None:
        leaked.append(os.dup(1))

    def once() -> FdLeaks:
        try:
            return checked(check, dup_stdout)
        finally:
            while leaked:
                os.close(leaked.pop())

    with fds_open(TARGET_AT) as count:
        leaks, t = measure(benchmark, once)
    (leak,) = leaks.fds
    assert leak.dup_of is not None, leaks.report()
    RESULTS.add(FIGURE, f"{count} open fds, one dup of fd 1 leaked", fmt_time(t), "", None)
