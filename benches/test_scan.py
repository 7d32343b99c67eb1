"""Figure 6: ``kcmp-rs scan`` (issue 5) on process families with known sharing.

- 200 processes x 100 fds (``build_family`` of the tests' ``_family.py``): wall time of
  ``kcmp-rs scan -J -p <pids>`` vs ``lsof -p <pids>``, runs interleaved, medians.
  Target: scan <= 0.5x lsof. The scan's JSON must list exactly the family's shared
  descriptions.
- 1000 processes x 200 fds: scan wall time and peak RSS (from wait4's rusage of the
  scan process). Targets: < 2 s, < 200 MB.

Both commands write to a file (the scan's JSON is checked on the first run); wall
time is from the spawn to the reaping of the process, interpreter start included.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from typing import Any

import pytest
from _benchlib import RESULTS, fmt_time, run_command
from _family import Family, build_family

SMALL = (200, 100)
BIG = (1000, 200)
RUNS_SMALL = 5
RUNS_BIG = 3
LSOF_RATIO = 0.5
BIG_SECONDS = 2.0
BIG_RSS_MB = 200.0


def scan_command(pids: tuple[int, ...]) -> list[str]:
    script = shutil.which("kcmp-rs", path=os.path.dirname(sys.executable))
    head = [script] if script else [sys.executable, "-m", "kcmp_rs"]
    return [*head, "scan", "-J", "-p", ",".join(map(str, pids))]


def run(cmd: list[str], out_path: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of one run, stdout to ``out_path``
    (through ``run_command``: a peak RSS of the command's own)."""
    return run_command(cmd, out_path)


def check_status(status: int, out_path: str, what: str) -> None:
    """A failed scan is reported in the summary (with its stderr) and fails the test."""
    if status == 0:
        return
    with open(out_path + ".err", "rb") as f:
        err = f.read().decode(errors="replace").strip().splitlines()
    tail = err[-1] if err else ""
    RESULTS.add("6 scan exit status", what, f"exit {status}", "0", False, note=tail[:200])
    raise AssertionError(f"{what}: scan exited {status}: {' / '.join(err[-5:])}")


def check_scan(out_path: str, family: Family) -> None:
    with open(out_path, "rb") as f:
        doc = json.load(f)
    found = [tuple((m["pid"], m["fd"]) for m in d["members"]) for d in doc["descriptions"]]
    assert found == family.groups
    assert doc["skipped"] == []
    assert doc["processes_read"] == len(family.pids)


def test_scan_vs_lsof(benchmark: Any) -> None:
    lsof = shutil.which("lsof")
    if lsof is None:
        pytest.skip("lsof not installed: no baseline for the scan")
    benchmark.group = "scan"
    n_procs, n_fds = SMALL
    with build_family(n_procs, n_fds) as family, tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        scan_cmd = scan_command(family.pids)
        lsof_cmd = [lsof, "-p", ",".join(map(str, family.pids))]
        case = f"{n_procs} procs x {n_fds} fds"
        wall, _, status = run(scan_cmd, out)  # warm-up, and the correctness check
        check_status(status, out, case)
        check_scan(out, family)
        scans, lsofs = [], []
        for _ in range(RUNS_SMALL):
            wall, _, status = run(scan_cmd, out)
            check_status(status, out, case)
            scans.append(wall)
            wall, _, status = run(lsof_cmd, out)
            assert status in (0, 1)  # 1: lsof found nothing for some pid (none expected)
            lsofs.append(wall)

        # The table entry: the scan alone, through pytest-benchmark.
        def once() -> None:
            check_status(run(scan_cmd, out)[2], out, case)

        benchmark.pedantic(once, rounds=1, iterations=1)
    s, lo = statistics.median(scans), statistics.median(lsofs)
    x = s / lo
    RESULTS.add(
        "6 scan vs lsof",
        case,
        f"{x:.2f}x (scan {fmt_time(s)}, lsof {fmt_time(lo)}; medians of {RUNS_SMALL})",
        f"<= {LSOF_RATIO}x",
        x <= LSOF_RATIO,
    )


def test_scan_big() -> None:
    n_procs, n_fds = BIG
    case = f"{n_procs} procs x {n_fds} fds"
    with build_family(n_procs, n_fds) as family, tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        cmd = scan_command(family.pids)
        walls, rss = [], []
        for i in range(RUNS_BIG):
            wall, peak, status = run(cmd, out)
            check_status(status, out, case)
            if i == 0:
                check_scan(out, family)
            walls.append(wall)
            rss.append(peak)
    wall = statistics.median(walls)
    peak = max(rss)
    RESULTS.add(
        "6 scan wall time",
        case,
        f"{fmt_time(wall)} (median of {RUNS_BIG})",
        f"< {BIG_SECONDS:.0f} s",
        wall < BIG_SECONDS,
    )
    RESULTS.add(
        "6 scan peak RSS",
        case,
        f"{peak:.0f} MB (max of {RUNS_BIG})",
        f"< {BIG_RSS_MB:.0f} MB",
        peak < BIG_RSS_MB,
    )
