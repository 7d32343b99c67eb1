"""Session set-up of the benchmarks and the summary printed at the end of ``make bench``.

- ``tests/`` on ``sys.path``: figure 6 builds its process families with the tests'
  ``_family.py``, imported by name like the tests' own helpers.
- ``nofile_limit`` (autouse, session): raises the RLIMIT_NOFILE soft limit to the hard
  limit for the session (10,000-fd sets need it) and restores it afterwards.
- ``files``: a temporary directory of empty files to open (removed at the end).
- ``pytest_terminal_summary``: one table with every figure, its target and whether it
  was met, then the date and the machine.
"""

from __future__ import annotations

import datetime
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from _benchlib import (
    PLANNED_TARGET_SELF,
    RESULTS,
    SCENARIOS,
    SIZES,
    SORTED_TARGETS,
    WHERES,
    FileSet,
    Row,
    fmt_time,
    load_average,
    machine,
    make_files,
    ratio,
    scratch_dir,
)

# The benchmarks' modules are imported after this file, so they find the tests' helpers;
# a missing helper then fails the import loudly instead of skipping a figure.
_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_sessionstart(session: pytest.Session) -> None:
    RESULTS.load_at_start = load_average()


@pytest.fixture(scope="session", autouse=True)
def nofile_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < max(SIZES) + 200:
        pytest.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {max(SIZES)}-fd sets")
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        yield target
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="session")
def files() -> Iterator[FileSet]:
    directory = tempfile.mkdtemp(prefix="kcmp-bench-", dir=scratch_dir())
    try:
        yield make_files(directory, max(SIZES) + 16)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- summary


def _classify_rows() -> list[Row]:
    """Figure 1 rows with targets (n = 10,000), from the recorded medians."""
    rows = []
    n = max(SIZES)
    for scenario in SCENARIOS:
        for where in WHERES:
            case = RESULTS.classify.get((scenario, where, n))
            if case is None:
                continue
            target = SORTED_TARGETS.get((scenario, where))
            r = ratio(case.sorted, case.native)
            if target is not None and r is not None:
                rows.append(
                    Row(
                        "1 classify vs sorted",
                        f"{scenario} {where} n={n}",
                        f"{r:.1f}x ({fmt_time(case.native)} vs {fmt_time(case.sorted)})",
                        f">= {target}x",
                        r >= target,
                    )
                )
            r = ratio(case.planned, case.native)
            if r is not None:
                self_target = where == "self"
                rows.append(
                    Row(
                        "1 classify vs planned",
                        f"{scenario} {where} n={n}",
                        f"{r:.1f}x ({fmt_time(case.native)} vs {fmt_time(case.planned)})",
                        f">= {PLANNED_TARGET_SELF}x" if self_target else "",
                        (r >= PLANNED_TARGET_SELF) if self_target else None,
                    )
                )
    return rows


def _classify_table() -> list[str]:
    head = (
        f"{'scenario':<10} {'where':<6} {'n':>6} {'native':>10} {'sorted':>10} "
        f"{'planned':>10} {'x sorted':>9} {'x planned':>9} "
        f"{'groups':>6} {'keys':>6} {'kcmp':>7} {'sames':>6}"
    )
    lines = [head, "-" * len(head)]
    for scenario in SCENARIOS:
        for where in WHERES:
            for n in SIZES:
                c = RESULTS.classify.get((scenario, where, n))
                if c is None:
                    continue
                rs = ratio(c.sorted, c.native)
                rp = ratio(c.planned, c.native)
                g, k, cmp_, s = c.stats if c.stats else ("-",) * 4
                lines.append(
                    f"{scenario:<10} {where:<6} {n:>6} {fmt_time(c.native):>10} "
                    f"{fmt_time(c.sorted):>10} {fmt_time(c.planned):>10} "
                    f"{(f'{rs:.1f}x' if rs else '-'):>9} {(f'{rp:.1f}x' if rp else '-'):>9} "
                    f"{g:>6} {k:>6} {cmp_:>7} {s:>6}"
                )
    return lines


def _rows_table(rows: list[Row]) -> list[str]:
    def status(r: Row) -> str:
        return {True: "MET", False: "MISSED", None: "info"}[r.met]

    cols = [
        ("figure", [r.figure for r in rows]),
        ("case", [r.case for r in rows]),
        ("measured", [r.measured for r in rows]),
        ("target", [r.target for r in rows]),
        ("status", [status(r) for r in rows]),
    ]
    widths = [max([len(h), *(len(v) for v in vals)]) for h, vals in cols]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, widths))]
    lines.append("-" * len(lines[0]))
    for i, r in enumerate(rows):
        line = "  ".join(vals[i].ljust(w) for (_, vals), w in zip(cols, widths))
        lines.append(line.rstrip() + (f"  [{r.note}]" if r.note else ""))
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS.classify and not RESULTS.rows:
        return
    tr = terminalreporter
    tr.section("kcmp_rs benchmark summary")
    if RESULTS.classify:
        tr.write_line("Figure 1: classify_fds, medians (native kcmp_rs vs ctypes baselines)")
        for line in _classify_table():
            tr.write_line(line)
        tr.write_line("")
    rows = _classify_rows() + RESULTS.rows
    rows.sort(key=lambda r: r.figure.split(" ", 1)[0])  # stable: by figure number
    if rows:
        for line in _rows_table(rows):
            tr.write_line(line)
    met = sum(r.met is True for r in rows)
    missed = [r for r in rows if r.met is False]
    tr.write_line("")
    tr.write_line(f"targets met: {met}, missed: {len(missed)}")
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    tr.write_line(f"date: {now}")
    tr.write_line(f"machine: {machine()}")
    tr.write_line(
        f"load average (1/5/15 min): {RESULTS.load_at_start} at start, {load_average()} at "
        "end (figure 6 itself forks up to 1000 processes; other work on the machine skews "
        "timings, so each ratio compares runs interleaved round by round)"
    )
