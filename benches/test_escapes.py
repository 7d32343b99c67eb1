"""Figure 12: the escape audit, ``escapes(pids)``, on 100 "containers": 100 mount
namespaces of 5 processes each, every process holding 50 fds. Target: one audit of
all 500 in at most 1 s (median of 5 runs).

A leader per namespace opens 5 directories of the host (a scratch directory) before
it unshares CLONE_NEWNS (the leak every process of the namespace then holds, as
inherited fds), makes its mounts private and forks 4 members; each of the 5 then opens
its own fds up to 50 inside the namespace (pipes, files of the namespace's copy of
the scratch directory's mount, /dev/null): 2,500 findings, 22,500 fds that are none.
Every process is this benchmark's own, released and reaped on every path.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import kcmp_rs
from _benchlib import RESULTS, fmt_time, forked, reap_or_kill, scratch_dir

NAMESPACES = 100
PER_NAMESPACE = 5
FDS = 50
HOST_DIRS = 5
ROUNDS = 5
TARGET = 1.0
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_MS_REC_PRIVATE = 0x4000 | 0x40000


def _keep_only(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(name))


def _fill(directory: str, report: int, lifeline: int) -> None:
    """Opens this process's own fds up to ``FDS``, reports its pid, waits."""
    held = len(os.listdir("/proc/self/fd")) - 1
    n = 0
    while held < FDS:
        if n % 5 == 0 and held + 2 <= FDS:
            os.pipe()
            held += 2
        elif n % 5 == 1:
            os.open(os.devnull, os.O_RDONLY)
            held += 1
        else:
            os.open(os.path.join(directory, "file"), os.O_RDONLY)
            held += 1
        n += 1
    os.write(report, f"{os.getpid()}\n".encode().rjust(16))
    os.close(report)  # the reader waits for every copy's close
    while os.read(lifeline, 1):
        pass


def _leader(directory: str, report: int, lifeline: int) -> None:
    _keep_only({report, lifeline})
    for _ in range(HOST_DIRS):
        os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    if _libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if _libc.mount(b"none", b"/", None, _MS_REC_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    members = []
    for _ in range(PER_NAMESPACE - 1):
        members.append(forked(lambda: _fill(directory, report, lifeline)))
    _fill(directory, report, lifeline)
    for pid in members:
        os.waitpid(pid, 0)


@contextlib.contextmanager
def containers() -> Iterator[list[int]]:
    """The 500 processes' pids, each ready."""
    directory = tempfile.mkdtemp(prefix="kcmp-escapes-bench-", dir=scratch_dir())
    with open(os.path.join(directory, "file"), "w"):
        pass
    lifeline_r, lifeline_w = os.pipe()
    report_r, report_w = os.pipe()
    leaders = []
    try:
        for _ in range(NAMESPACES):
            leaders.append(forked(lambda: _leader(directory, report_w, lifeline_r)))
        os.close(report_w)
        report_w = -1
        with os.fdopen(report_r, "rb", closefd=False) as f:
            pids = sorted(int(p) for p in f.read().split())
        assert len(pids) == NAMESPACES * PER_NAMESPACE, f"{len(pids)} processes reported"
        yield pids
    finally:
        os.close(lifeline_w)
        reap_or_kill(leaders)
        for fd in (lifeline_r, report_r, report_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(directory, ignore_errors=True)


def test_escape_audit(benchmark: Any) -> None:
    benchmark.group = "escapes"
    with containers() as pids:
        found = kcmp_rs.escapes(pids)
        assert found.skipped == (), found.skipped
        assert found.mount_namespaces_read == NAMESPACES
        assert found.found == len(pids) * HOST_DIRS
        assert all(f.kind == "outside-namespace" and f.file_type == "DIR" for f in found.findings)
        times = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            kcmp_rs.escapes(pids)
            times.append(time.perf_counter() - t0)
        benchmark.pedantic(lambda: kcmp_rs.escapes(pids), rounds=1, iterations=1)
    wall = statistics.median(times)
    RESULTS.add(
        "12 escape audit",
        f"{NAMESPACES} mount namespaces x {PER_NAMESPACE} procs x {FDS} fds",
        f"{fmt_time(wall)} (median of {ROUNDS}; {len(pids) * HOST_DIRS} findings)",
        f"<= {TARGET:.0f} s",
        wall <= TARGET,
    )
