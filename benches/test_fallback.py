"""Figure 5: classify_fds without kcmp (issue 4), in subprocesses.

``disable_kcmp()`` is process-wide and irreversible, so ``_fallback_child.py`` runs in
its own interpreter: workers on the kcmp path and workers that call ``disable_kcmp()``
first alternate (``PAIRS`` times), each timing the calling process's 10,000 fds per
scenario; medians over all their rounds. Targets: distinct and dup-heavy within 1.5x
of the kcmp path (neither needs an order: fstat buckets plus F_DUPFD_QUERY decide
them). One-inode and mix are printed beside the kcmp path's, without a target: with no
order, a bucket of k descriptions costs a linear scan per fd (one-inode: ~N * N/8
F_DUPFD_QUERY calls, so it is timed once).

Figure 5b: the same without F_DUPFD_QUERY (refused by a seccomp filter, as before
Linux 6.10): files of one inode fall to the lock test (about eight fcntl calls and an
fdinfo read per pair). Printed beside the kcmp path, without a target; one-inode is
left out (a linear scan of lock tests per fd: minutes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

from _benchlib import RESULTS, SCENARIOS, fmt_time

TARGETS = {"distinct": 1.5, "dup": 1.5}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fallback_child.py")
PAIRS = 3
ROUNDS = 5
FAST = [s for s in SCENARIOS if s != "one-inode"]


def worker(mode: str, rounds: int, scenarios: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, WORKER, mode, str(rounds), *scenarios],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_fallback() -> None:
    samples: dict[tuple[str, str], list[float]] = {}
    dupfd_query = True
    for i in range(PAIRS):
        for mode in ("kcmp", "fallback"):
            # One-inode without kcmp takes seconds per call: once, in the first pair.
            scenarios = SCENARIOS if (mode == "kcmp" or i == 0) else FAST
            rounds = {"one-inode": 1} if mode == "fallback" else {}
            for s in scenarios:
                out = worker(mode, rounds.get(s, ROUNDS), [s])
                kcmp_ok, dq = out["support"]
                assert kcmp_ok == (mode == "kcmp")
                dupfd_query = dupfd_query and dq
                samples.setdefault((mode, s), []).extend(out["times"][s])
    for s in SCENARIOS:
        with_kcmp = statistics.median(samples[("kcmp", s)])
        without = statistics.median(samples[("fallback", s)])
        x = without / with_kcmp
        target = TARGETS.get(s)
        RESULTS.add(
            "5 fallback (no kcmp)",
            f"{s} self n=10000",
            f"{x:.2f}x of kcmp path ({fmt_time(without)} vs {fmt_time(with_kcmp)})",
            f"<= {target}x" if target else "",
            (x <= target) if target else None,
            note="" if dupfd_query else "no F_DUPFD_QUERY: epoll equality test",
        )


def test_lock_rung() -> None:
    samples: dict[tuple[str, str], list[float]] = {}
    scenarios = ["distinct", "dup", "mix"]
    for _ in range(PAIRS):
        for mode in ("kcmp", "lock"):
            for s in scenarios:
                out = worker(mode, 1 if (mode, s) == ("lock", "mix") else ROUNDS, [s])
                assert out["support"] == [mode == "kcmp", mode == "kcmp"], out["support"]
                samples.setdefault((mode, s), []).extend(out["times"][s])
    for s in scenarios:
        with_kcmp = statistics.median(samples[("kcmp", s)])
        without = statistics.median(samples[("lock", s)])
        times = f"{fmt_time(without)} vs {fmt_time(with_kcmp)}"
        RESULTS.add(
            "5b lock rung (no kcmp, no F_DUPFD_QUERY)",
            f"{s} self n=10000",
            f"{without / with_kcmp:.2f}x of kcmp path ({times})",
            "",
            None,
        )
