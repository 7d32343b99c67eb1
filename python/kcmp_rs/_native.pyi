"""The compiled core of kcmp_rs. Use the names re-exported by ``kcmp_rs`` instead."""

from collections.abc import Iterable
from typing import Literal

from kcmp_rs._types import KcmpType, Order

__version__: str

def kcmp(pid1: int, pid2: int, type: KcmpType | int, idx1: int = 0, idx2: int = 0) -> Order:
    """Compare a kernel resource of two processes; the kernel's order as an ``Order``.

    ``idx1``/``idx2`` are fds for ``KcmpType.FILE`` and ignored otherwise. Raises
    ValueError for ``KcmpType.EPOLL_TFD`` (use ``same_epoll_target``), TypeError or
    ValueError for bad arguments, and an OSError chosen by errno, with ``pid`` and
    ``fd`` naming what was at fault.
    """

def same_file(pid1: int, fd1: int, pid2: int, fd2: int, *, allow_pidfd_getfd: bool = False) -> bool:
    """Whether fd1 of pid1 and fd2 of pid2 refer to one open file description."""

def same_task(pid1: int, pid2: int, type: KcmpType | int) -> bool:
    """Whether the two tasks share the resource ``type`` (not FILE or EPOLL_TFD)."""

def sharing(pid1: int, pid2: int) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(vm, files, fs, sighand, io, sysvsem) shared by the two processes."""

def same_epoll_target(
    pid1: int, fd: int, pid2: int, epfd: int, target_fd: int, target_index: int = 0
) -> bool:
    """Whether ``fd`` of ``pid1`` is the file registered in epoll set ``epfd`` of ``pid2``
    under ``target_fd`` (its ``target_index``-th registration)."""

def open_fds(pid: int) -> list[int]:
    """The fds open in ``pid``, ascending (read from /proc/PID/fd)."""

def classify_fds(
    pid: int,
    fds: Iterable[int] | None = None,
    *,
    order: Literal["fd", "kernel"] = "fd",
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> list[tuple[int, ...]]:
    """Group fds of ``pid`` (default: all open ones) by open file description."""

def classify_fds_stats(
    pid: int, fds: Iterable[int], order: Literal["fd", "kernel"] = "fd"
) -> tuple[list[tuple[int, ...]], int, int, int]:
    """classify_fds with the engine's counts: (groups, keys, kcmp calls, equality checks)."""

def classify_files(
    refs: Iterable[tuple[int, int]],
    *,
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> list[tuple[tuple[int, int], ...]]:
    """Group (pid, fd) pairs across processes by open file description."""

def classify_files_partial(
    refs: Iterable[tuple[int, int]],
    *,
    missing: Literal["raise", "skip"] = "raise",
    allow_pidfd_getfd: bool = False,
) -> tuple[list[tuple[tuple[int, int], ...]], list[tuple[int, int]]]:
    """classify_files returning the refs no exact method could decide instead of raising."""

def classify_tasks(
    pids: Iterable[int], type: KcmpType | int, *, missing: Literal["raise", "skip"] = "raise"
) -> list[tuple[int, ...]]:
    """Group tasks sharing the resource ``type`` (VM, FILES, FS, SIGHAND, IO, SYSVSEM)."""

def support(*, refresh: bool = False) -> tuple[bool, bool, bool, str]:
    """(kcmp, dupfd_query, pidfd_getfd, reason)."""

def disable_kcmp() -> None:
    """Never issue kcmp(2) again in this process."""

def bench_syscall_floor(
    refs: Iterable[tuple[int, int]], rounds: int = 5
) -> tuple[list[float], list[float], int, int, int, int]:
    """Benchmark helper: (floor s/round, engine s/round, keys, compares, sames, ops)."""
