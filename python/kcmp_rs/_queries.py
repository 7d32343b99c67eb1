"""The questions users come with, answered without a whole scan: who holds one open
file description (``holders``), what two processes share (``shared_files``), and what
an epoll set watches (``epoll_targets``).

Each question is one native pass (``_native.holders``, ``shared_files``,
``epoll_targets``) with the GIL released; this module checks what Python alone can
check and builds the result types of ``_results`` from the native answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable

from kcmp_rs import _native
from kcmp_rs._proc import decoded, decoded_names
from kcmp_rs._results import (
    Description,
    EpollTarget,
    Holders,
    Member,
    SharedFiles,
    Skipped,
    deferred,
)
from kcmp_rs._scan import _check_flag, _check_progress, _checked_pids

__all__ = [
    "epoll_sets_from_report",
    "epoll_targets",
    "holders",
    "holders_from_report",
    "holders_report",
    "shared_files",
]

# ---- holders ----


def holders(
    pid: int,
    fd: int,
    pids: Iterable[int] | None = None,
    *,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Holders:
    """Every ``(pid, fd)`` among ``pids`` that refers to the open file description of
    ``fd`` in ``pid``: who still holds the write end of a pipe, who else has a socket
    or a lock file open as the same description.

    ``pids``: the processes to search (None: every process in /proc); the asked fd is
    among the holders when ``pid`` is. Processes sharing an fd table are read once,
    under the smallest pid (``fd_table_shared``). A process that cannot be read, or
    exits during the search, is listed in ``skipped`` with the reason, never taken
    as holding nothing; ``complete`` says whether the answer covers every process.

    Cost: one kcmp per candidate fd (no stat, no grouping), plus a listing of each
    process's /proc/PID/fd. Where kcmp is blocked, the fds on the target's inode are
    compared with the batch's exact fallbacks (``allow_pidfd_getfd`` as for
    ``classify_files``) and what they cannot decide is in ``undecided``.

    Raises ``ProcessLookupError`` when ``pid`` does not exist or exits during the
    search, ``OSError`` (EBADF) when ``fd`` is not open in it, ``BlockingIOError``
    when ``fd`` was closed or replaced during the search.
    """
    return holders_from_report(
        holders_report(pid, fd, pids, allow_pidfd_getfd=allow_pidfd_getfd, progress=progress)
    )


def holders_report(
    pid: int,
    fd: int,
    pids: Iterable[int] | None = None,
    *,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> _native.HoldersReport:
    """``holders()``'s native report, for the CLI to write as JSON without the view."""
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    _check_progress(progress)
    wanted = None if pids is None else _checked_pids(pids)
    return _native.holders(pid, fd, wanted, allow_pidfd_getfd, progress)


def holders_from_report(report: _native.HoldersReport) -> Holders:
    """The ``Holders`` view of a native report: its description (the member objects)
    built on first access."""
    pid, fd = report.pid, report.fd
    return deferred(
        Holders,
        {
            "pid": pid,
            "fd": fd,
            "skipped": tuple(Skipped(p, r) for p, r in report.skipped),
            "processes_read": report.processes_read,
            "fds_compared": report.fds_compared,
            "undecided": tuple(report.undecided),
            "fd_table_shared": tuple(tuple(t) for t in report.fd_table_shared),
        },
        {"description": lambda: _holders_description(report)},
    )


def _holders_description(report: _native.HoldersReport) -> Description:
    commands = decoded_names(report.commands())
    target, mode, kind = report.shown()
    members = tuple(Member(p, f, commands.get(p, "?")) for p, f in report.holders)
    return Description(decoded(target), mode, members, kind)


# ---- shared files ----


def shared_files(pid1: int, pid2: int, *, allow_pidfd_getfd: bool = False) -> SharedFiles:
    """The open file descriptions ``pid1`` and ``pid2`` share, told apart from separate
    opens of the same file: ``shared`` pairs ``(fds_in_pid1, fds_in_pid2)`` by
    description, ``reopened`` pairs them by inode for the fds whose description the
    other process does not hold.

    One native pass (``_native.shared_files``): both processes (thread ids included)
    are pinned before either is listed; if either exits during the call,
    ``ProcessLookupError``. Where kcmp is blocked the batch's exact fallbacks decide
    (``allow_pidfd_getfd`` as for ``classify_files``); fds they cannot decide are in
    ``undecided``.
    """
    shared, reopened, same_table, undecided = _native.shared_files(
        pid1, pid2, allow_pidfd_getfd=allow_pidfd_getfd
    )
    return SharedFiles(
        int(pid1),
        int(pid2),
        tuple((tuple(a), tuple(b)) for a, b in shared),
        tuple((tuple(a), tuple(b)) for a, b in reopened),
        same_table,
        tuple(undecided),
    )


# ---- epoll ----


def _epoll_targets(
    pid: int, epfd: int, pids: Iterable[int] | None
) -> tuple[list[EpollTarget], int]:
    """``epoll_targets()`` and the number of KCMP_EPOLL_TFD calls it made."""
    report = _native.epoll_sets(pid, epfd, pids)
    [(_, answers)] = epoll_sets_from_report(report)
    return answers, report.calls


def epoll_sets_from_report(report: _native.EpollReport) -> list[tuple[int, list[EpollTarget]]]:
    """Each set of a native report, ``(epfd, registrations)``, as result types."""
    commands = decoded_names(report.commands())
    return [
        (
            epfd,
            [
                EpollTarget(
                    tfd,
                    index,
                    events,
                    data,
                    ino,
                    status,
                    tuple(Member(p, f, commands.get(p, "?")) for p, f in found),
                )
                for tfd, index, events, data, ino, status, found in regs
            ],
        )
        for epfd, regs in report.sets()
    ]


def epoll_targets(pid: int, epfd: int, pids: Iterable[int] | None = None) -> list[EpollTarget]:
    """What epoll set ``epfd`` of ``pid`` watches: one ``EpollTarget`` per registration
    in ``/proc/PID/fdinfo/EPFD``, each with the ``(pid, fd)`` that refer to the
    registered file now (in ``pid`` and in ``pids``, if given) and whether its fd
    number still names it (``status``: ``"open"``, ``"closed"`` or ``"reused"``).

    Registered files are found with kcmp's ``KCMP_EPOLL_TFD`` (the 12-byte slot),
    only among fds on the registered inode: one call per candidate. Works for sets
    inherited through fork or passed over a Unix socket, and for a file registered
    under several fd numbers. Raises ``KcmpUnavailableError`` where kcmp is blocked
    (nothing else can tell), ``OSError`` EINVAL when ``epfd`` is not an epoll fd,
    EBADF when it is not open, and ``ProcessLookupError`` when a process asked about
    does not exist or exits during the call.
    """
    return _epoll_targets(pid, epfd, pids)[0]
