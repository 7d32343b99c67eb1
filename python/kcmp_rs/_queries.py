"""The questions users come with, answered without a whole scan: who holds one open
file description (``holders``), what two processes share (``shared_files``), and what
an epoll set watches (``epoll_targets``), who has a file open (``who``).

Each question is one native pass (``_native.holders``, ``shared_files``,
``epoll_sets``, ``scan_files``) with the GIL released; this module checks what Python alone can
check and builds the result types of ``_results`` from the native answers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Callable, Union

from kcmp_rs import _native
from kcmp_rs._proc import decoded, decoded_names, list_pids
from kcmp_rs._results import (
    Description,
    EpollTarget,
    FileDescription,
    Holders,
    Member,
    SharedFiles,
    Skipped,
    Who,
    WhoFile,
    deferred,
)
from kcmp_rs._scan import _check_flag, _check_progress, _checked_pids, scan_from_report

#: What ``who()`` takes as a path: a name, as ``os.stat`` does.
Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__ = [
    "epoll_sets_from_report",
    "epoll_targets",
    "holders",
    "holders_from_report",
    "holders_report",
    "shared_files",
    "who",
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

    ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy fds to compare
    them. ``progress(done, total)``: called between steps of the search (None: not);
    an exception it raises ends the search and propagates.

    Returns a ``Holders``: ``description`` (the asked fd's), ``members`` (every holder,
    ascending), ``skipped``, ``undecided``, ``processes_read``, ``fds_compared``.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when ``pid`` does not exist,
    is a zombie or exits during the search, ``FdNotOpenError`` (an ``OSError``, EBADF)
    when ``fd`` is not open in it, ``ProcessAccessError`` (a ``PermissionError``) when
    ``pid`` may not be inspected, ``BlockingIOError`` when ``fd`` was closed or
    replaced during the search, TypeError or ValueError for an argument of the wrong
    type or range (a pid of ``pids`` that cannot be read is skipped, not raised).
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
    description, ``reopened`` pairs them by inode for the files each process has open
    through a description the other does not hold: only those fds, on both sides (a
    file one process holds only through a shared description is in no pair).

    One native pass (``_native.shared_files``): both processes (thread ids included)
    are pinned before either is listed; if either exits during the call,
    ``ProcessLookupError``. Where kcmp is blocked the batch's exact fallbacks decide
    (``allow_pidfd_getfd`` as for ``classify_files``); fds they cannot decide are in
    ``undecided``.

    Returns a ``SharedFiles`` (``pid1``, ``pid2``: process or thread ids, as given).

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either process does not
    exist, is a zombie or exits during the call, ``ProcessAccessError`` (a
    ``PermissionError``) when either may not be inspected, TypeError or ValueError
    for an argument of the wrong type or range (``allow_pidfd_getfd`` must be a bool).
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
    under several fd numbers.

    Returns a list of ``EpollTarget``, in the order /proc lists the registrations.

    Raises ``KcmpUnavailableError`` where kcmp is blocked (nothing else can tell), a
    ``KcmpError`` (an ``OSError``, EINVAL) when ``epfd`` is not an epoll fd,
    ``FdNotOpenError`` (EBADF) when it is not open, ``ProcessGoneError`` (a
    ``ProcessLookupError``) when ``pid`` or a process of ``pids`` does not exist, is a
    zombie or exits during the call, ``ProcessAccessError`` (a ``PermissionError``)
    when one may not be inspected, TypeError or ValueError for a bad argument.
    """
    return _epoll_targets(pid, epfd, pids)[0]


# ---- who ----


def who(
    paths: Path | Iterable[Path],
    pids: Iterable[int] | None = None,
    *,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Who:
    """Every ``(pid, fd)`` that has each file of ``paths`` open, grouped by open file
    description, with each description's mode and offset: what ``lsof FILE`` and
    ``fuser`` answer, with separate opens told apart from shared ones.

    ``paths``: one path or several (str, bytes or ``os.PathLike``); each means the
    file it resolves to (symlinks followed, relative to the working directory),
    matched by device and inode. ``pids``: the processes to search (None: every
    process in /proc). One native pass, as ``scan()``: every process pinned, the ones
    that cannot be read in ``skipped``, the fds no exact method could decide (kcmp
    blocked) in ``undecided``; ``complete`` says whether the answer covers everything.
    An fd opened or replaced while the call runs may be missed, as by any snapshot.

    ``allow_pidfd_getfd``: where kcmp is blocked, let pidfd_getfd(2) copy fds to compare
    them. ``progress(done, total)``: called as the fds of each process have been read
    (None: not); an exception it raises ends the search and propagates.

    Returns a ``Who``: one ``WhoFile`` per path (in the order given), each with its
    descriptions and their holders, and ``skipped``, ``undecided``, ``complete``.

    Raises ``FileNotFoundError`` (and the other errors of ``os.stat``) for a path that
    cannot be resolved, ValueError when no path is given or a pid is out of range,
    TypeError for a path, pid, flag or ``progress`` of the wrong type. A process that
    cannot be read is skipped, not raised.
    """
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    _check_progress(progress)
    asked = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else list(paths)
    if not asked:
        raise ValueError("who() needs at least one path")
    keys = []
    for path in asked:
        st = os.stat(path)
        keys.append((st.st_dev, st.st_ino))
    wanted = list_pids() if pids is None else _checked_pids(pids)
    report = _native.scan_files(wanted, sorted(set(keys)), allow_pidfd_getfd, progress)
    found = scan_from_report(report)
    on: defaultdict[tuple[int, int], list[FileDescription]] = defaultdict(list)
    for d, key, offset in zip(found.descriptions, report.keys(), report.offsets()):
        on[key].append(FileDescription(d.target, d.mode, d.members, d.type, (), offset))
    files = tuple(
        WhoFile(os.fsdecode(path), dev, ino, tuple(on[(dev, ino)]))
        for path, (dev, ino) in zip(asked, keys)
    )
    return Who(files, found.skipped, found.processes_read, found.undecided, found.fd_table_shared)
