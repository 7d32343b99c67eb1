"""The compiled core of kcmp_rs. Use the names re-exported by ``kcmp_rs`` instead."""

from kcmp_rs._types import KcmpType, Order

__version__: str

def kcmp(pid1: int, pid2: int, type: KcmpType | int, idx1: int = 0, idx2: int = 0) -> Order:
    """Compare a kernel resource of two processes; the kernel's order as an ``Order``.

    ``idx1``/``idx2`` are fds for ``KcmpType.FILE`` and ignored otherwise. Raises
    ValueError for ``KcmpType.EPOLL_TFD`` (use ``same_epoll_target``), TypeError or
    ValueError for bad arguments, and an OSError chosen by errno, with ``pid`` and
    ``fd`` naming what was at fault.
    """

def same_file(
    pid1: int, fd1: int, pid2: int, fd2: int, *, allow_pidfd_getfd: bool = False
) -> bool:
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
