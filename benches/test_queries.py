"""Figure 7: the questions of issue 11, answered without a whole scan.

- ``holders`` on the 200 x 100 example family (one target among 20,000 fds): median
  wall time against ``scan()`` answering the same question (the description holding
  the target, from a scan of the family) and against a Python loop of ``same_file``
  over every ``(pid, fd)`` from ``open_fds``. Targets: at least 5x faster than the
  scan, 3x faster than the loop (issue 19). Also printed: syscalls (kcmp) per
  candidate fd and the threads the search used.
- ``epoll_targets`` on an epoll set with 1,000 registrations: time and kcmp calls.

Every answer is checked against the others before it is timed.
"""

from __future__ import annotations

import os
import select
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

from _benchlib import RESULTS, fmt_time
from _family import build_family
from kcmp_rs import _config, _native, open_fds, same_file, scan
from kcmp_rs._queries import _epoll_targets, holders

FAMILY = (200, 100)
ROUNDS = 7
SCAN_RATIO = 5.0
LOOP_RATIO = 3.0
REGISTRATIONS = 1000


def median_time(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_holders_vs_scan_and_loop() -> None:
    n_procs, n_fds = FAMILY
    case = f"{n_procs} procs x {n_fds} fds"
    with build_family(n_procs, n_fds) as family:
        pids = list(family.pids)
        # A description the family shares: the first group with members in 2+ processes.
        group = next(g for g in family.groups if len({p for p, _ in g}) > 1)
        target = group[0]

        def by_holders() -> list[tuple[int, int]]:
            return [(m.pid, m.fd) for m in holders(*target, pids).members]

        def by_scan() -> list[tuple[int, int]]:
            for d in scan(pids).descriptions:
                found = [(m.pid, m.fd) for m in d.members]
                if target in found:
                    return found
            return []

        def by_loop() -> list[tuple[int, int]]:
            tp, tf = target
            return [(p, f) for p in pids for f in open_fds(p) if same_file(tp, tf, p, f)]

        want = sorted(group)
        assert by_holders() == want
        assert by_scan() == want
        assert by_loop() == want
        answer = holders(*target, pids)
        t_holders = median_time(by_holders)
        t_scan = median_time(by_scan, 3)
        t_loop = median_time(by_loop)
    per_fd = answer.fds_compared and (answer.fds_compared + 1) / answer.fds_compared
    x_scan = t_scan / t_holders
    x_loop = t_loop / t_holders
    RESULTS.add(
        "7 holders vs scan",
        case,
        f"{x_scan:.1f}x faster (holders {fmt_time(t_holders)}, scan {fmt_time(t_scan)})",
        f">= {SCAN_RATIO:.0f}x",
        x_scan >= SCAN_RATIO,
    )
    RESULTS.add(
        "7 holders vs same_file loop",
        case,
        f"{x_loop:.2f}x faster (loop {fmt_time(t_loop)}); "
        f"{per_fd:.3f} kcmp per candidate fd ({answer.fds_compared} fds), "
        f"{_native.set_thread_limit(_config.thread_limit_from_environment())} threads",
        f">= {LOOP_RATIO:.0f}x",
        x_loop >= LOOP_RATIO,
    )


def test_epoll_targets_1000() -> None:
    me = os.getpid()
    ep = select.epoll()
    pairs = [socket.socketpair() for _ in range(REGISTRATIONS // 2)]
    try:
        for a, b in pairs:
            ep.register(a.fileno(), select.EPOLLIN)
            ep.register(b.fileno(), select.EPOLLIN)
        regs, calls = _epoll_targets(me, ep.fileno(), None)
        assert len(regs) == REGISTRATIONS
        assert all(r.status == "open" and len(r.holders) == 1 for r in regs)
        t = median_time(lambda: _epoll_targets(me, ep.fileno(), None))
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        ep.close()
    RESULTS.add(
        "7 epoll_targets",
        f"{REGISTRATIONS} registrations",
        f"{fmt_time(t)}, {calls} KCMP_EPOLL_TFD calls ({calls / REGISTRATIONS:.2f} each)",
        "reported",
        True,
    )
