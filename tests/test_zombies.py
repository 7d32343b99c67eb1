"""Every public function and CLI subcommand against a zombie: a child that exited and
is not reaped keeps its pid but has no address space, fd table or fs left, so kcmp
would compare NULL pointers. Each raises ProcessLookupError saying "zombie" (the scan
skips it with the reason "zombie"), never an answer and never EBADF."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_kcmp
from kcmp_rs import KcmpType, Skipped

pytestmark = needs_kcmp

TASK_TYPES = [
    KcmpType.VM,
    KcmpType.FILES,
    KcmpType.FS,
    KcmpType.SIGHAND,
    KcmpType.IO,
    KcmpType.SYSVSEM,
]


Call = Callable[[int, int, int], object]  # (me, zombie, an fd of mine) -> result


def _kcmp(t: KcmpType, zombie_first: bool) -> Call:
    def call(me: int, z: int, fd: int) -> object:
        return kcmp_rs.kcmp(z, me, t) if zombie_first else kcmp_rs.kcmp(me, z, t)

    return call


def _classify_tasks(t: KcmpType) -> Call:
    def call(me: int, z: int, fd: int) -> object:
        return kcmp_rs.classify_tasks([me, z], t)

    return call


CALLS: dict[str, Call] = {
    **{f"kcmp(me, z, {t.name})": _kcmp(t, zombie_first=False) for t in TASK_TYPES},
    **{f"kcmp(z, me, {t.name})": _kcmp(t, zombie_first=True) for t in TASK_TYPES},
    "kcmp(z, z, VM)": lambda me, z, fd: kcmp_rs.kcmp(z, z, KcmpType.VM),
    "kcmp(me, z, FILE)": lambda me, z, fd: kcmp_rs.kcmp(me, z, KcmpType.FILE, fd, 0),
    "same_file": lambda me, z, fd: kcmp_rs.same_file(me, fd, z, 0),
    "same_file(z first)": lambda me, z, fd: kcmp_rs.same_file(z, 0, me, fd),
    "same_vm": lambda me, z, fd: kcmp_rs.same_vm(me, z),
    "same_files": lambda me, z, fd: kcmp_rs.same_files(me, z),
    "same_fs": lambda me, z, fd: kcmp_rs.same_fs(me, z),
    "same_sighand": lambda me, z, fd: kcmp_rs.same_sighand(me, z),
    "same_io": lambda me, z, fd: kcmp_rs.same_io(me, z),
    "same_sysvsem": lambda me, z, fd: kcmp_rs.same_sysvsem(me, z),
    "same_epoll_target(z holds the set)": (
        lambda me, z, fd: kcmp_rs.same_epoll_target(me, fd, z, 3, 4)
    ),
    "same_epoll_target(z holds the fd)": (
        lambda me, z, fd: kcmp_rs.same_epoll_target(z, 0, me, fd, fd)
    ),
    "sharing": lambda me, z, fd: kcmp_rs.sharing(me, z),
    "open_fds": lambda me, z, fd: kcmp_rs.open_fds(z),
    "classify_fds": lambda me, z, fd: kcmp_rs.classify_fds(z),
    "classify_fds(fds)": lambda me, z, fd: kcmp_rs.classify_fds(z, [0, 1, 2]),
    "classify_fds(skip)": lambda me, z, fd: kcmp_rs.classify_fds(z, missing="skip"),
    "classify_fds(fds, skip)": lambda me, z, fd: kcmp_rs.classify_fds(z, [0], missing="skip"),
    "classify_files": lambda me, z, fd: kcmp_rs.classify_files([(me, fd), (z, 0)]),
    **{f"classify_tasks({t.name})": _classify_tasks(t) for t in TASK_TYPES},
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_zombie_raises(name: str, zombie: int, pipe: tuple[int, int]) -> None:
    me = os.getpid()
    with pytest.raises(ProcessLookupError) as info:
        result = CALLS[name](me, zombie, pipe[0])
        pytest.fail(f"{name} answered {result!r} for a zombie")  # pragma: no cover
    e: Any = info.value
    assert e.pid == zombie, (name, e)
    assert str(e) == (
        f"[Errno 3] No such process: process {zombie} has exited and awaits reaping "
        "(a zombie): it has no resources left to compare"
    ), name


def test_skip_leaves_a_zombie_out_of_multi_process_batches(
    zombie: int, pipe: tuple[int, int]
) -> None:
    """``missing="skip"`` leaves out processes that exited, zombies included; only
    ``classify_fds`` (one process) raises either way."""
    me = os.getpid()
    r, w = pipe
    got = kcmp_rs.classify_files([(me, r), (zombie, r), (me, w)], missing="skip")
    assert got == [((me, r),), ((me, w),)]
    for t in TASK_TYPES:
        assert kcmp_rs.classify_tasks([zombie, me], t, missing="skip") == [(me,)], t


def test_scan_skips_a_zombie(zombie: int) -> None:
    """The scan never fails for a zombie: it is skipped with the reason "zombie" and
    the others are read."""
    me = os.getpid()
    found = kcmp_rs.scan([zombie, me])
    assert Skipped(zombie, "zombie") in found.skipped
    assert all(m.pid != zombie for d in found.descriptions for m in d.members)
    assert found.processes_read == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kcmp_rs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("fds", "{z}"), "has exited and awaits reaping (a zombie)"),
        (("share", "{me}", "{z}"), "has exited and awaits reaping (a zombie)"),
        (("share", "{z}", "{me}"), "has exited and awaits reaping (a zombie)"),
        (("scan", "-p", "{z}"), "has exited and awaits reaping (a zombie)"),
    ],
    ids=["fds", "share", "share-first", "scan-p"],
)
def test_cli_against_a_zombie(args: tuple[str, ...], says: str, zombie: int) -> None:
    argv = [a.format(z=zombie, me=os.getpid()) for a in args]
    done = _cli(*argv)
    assert done.returncode == 1, (argv, done)
    assert done.stderr.startswith(f"kcmp-rs: process {zombie} {says}"), (argv, done.stderr)
    assert "Traceback" not in done.stderr, (argv, done.stderr)
    if args[0] != "scan":  # the scan still prints its summary
        assert done.stdout == "", (argv, done.stdout)
