"""What ``holders()``, ``shared_files()`` and ``epoll_targets()`` return: frozen
dataclasses whose ``to_dict()`` is the JSON the ``kcmp-rs`` commands print.

Plain data, like ``_results``: each holder is a ``Member`` (``pid``, ``fd``,
``command``) and a description keeps one ``members`` list of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kcmp_rs._results import SCHEMA_VERSION, Description, Member, Ref, Skipped

if TYPE_CHECKING:
    from kcmp_rs._schema import EpollTargetDict, HoldersDict, PairDict, SharedFilesDict

__all__ = ["EpollTarget", "Holders", "SharedFiles"]


@dataclass(frozen=True)
class Holders:
    """Every fd that refers to the open file description of fd ``fd`` of ``pid``.

    ``description.members`` are the holders, ascending ``(pid, fd)``, the asked fd
    included when its process was among those read. ``skipped`` lists the processes
    that could not be read, and ``undecided`` the fds no exact method could compare
    (kcmp blocked): the answer is complete only when both are empty (``complete``).
    ``fd_table_shared``: sets of pids sharing one fd table, read once under the
    smallest. ``fds_compared``: candidate fds compared with the target.
    """

    pid: int
    fd: int
    description: Description
    skipped: tuple[Skipped, ...]
    processes_read: int
    fds_compared: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()

    @property
    def members(self) -> tuple[Member, ...]:
        """The holders: ``description.members``."""
        return self.description.members

    @property
    def complete(self) -> bool:
        """Whether every process was read and every fd decided."""
        return not self.skipped and not self.undecided

    def to_dict(self) -> HoldersDict:
        """The answer as the JSON document of ``kcmp-rs holders -J``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "pid": self.pid,
            "fd": self.fd,
            "description": self.description.to_dict(),
            "skipped": [s.to_dict() for s in self.skipped],
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "processes_read": self.processes_read,
            "fds_compared": self.fds_compared,
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }


@dataclass(frozen=True)
class SharedFiles:
    """The open file descriptions two processes share (``shared_files()``).

    ``shared``: one ``(fds_in_pid1, fds_in_pid2)`` pair per description both hold:
    inherited through fork, passed over a socket, or a shared fd table. ``reopened``:
    one pair per file (inode) both have open, with the fds of each whose description
    the other does not hold: separate opens of the same file, or one side's extra
    open. ``same_fd_table``: the two share one fd table (threads, CLONE_FILES), so
    every fd is shared. ``undecided``: fds no exact method could compare (kcmp
    blocked), in no pair.
    """

    pid1: int
    pid2: int
    shared: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    reopened: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    same_fd_table: bool = False
    undecided: tuple[Ref, ...] = ()

    def to_dict(self) -> SharedFilesDict:
        """The answer as a JSON object."""

        def pairs(ps: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]) -> list[PairDict]:
            return [{"fds1": list(a), "fds2": list(b)} for a, b in ps]

        return {
            "schema_version": SCHEMA_VERSION,
            "pid1": self.pid1,
            "pid2": self.pid2,
            "same_fd_table": self.same_fd_table,
            "shared": pairs(self.shared),
            "reopened": pairs(self.reopened),
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
        }


@dataclass(frozen=True)
class EpollTarget:
    """One registration of an epoll set, as ``/proc/PID/fdinfo/EPFD`` lists it, checked
    against what is open now.

    ``tfd``: the fd number the file was registered under; ``index``: which of the
    registrations under that number it is (the kernel's ``toff``: 0 unless the number
    was closed, reused and registered again); ``events`` and ``data`` as registered;
    ``ino`` the registered file's inode. ``holders``: the ``(pid, fd)`` that refer to
    the registered file now, in the set's process and the other processes asked.
    ``status``: ``"open"`` (``tfd`` still refers to that file), ``"closed"`` (``tfd``
    is not open) or ``"reused"`` (``tfd`` now names another file).
    """

    tfd: int
    index: int
    events: int
    data: int
    ino: int
    status: Literal["open", "closed", "reused"]
    holders: tuple[Member, ...]

    def to_dict(self) -> EpollTargetDict:
        """The registration as a JSON object."""
        return {
            "tfd": self.tfd,
            "index": self.index,
            "events": self.events,
            "data": self.data,
            "ino": self.ino,
            "status": self.status,
            "holders": [m.to_dict() for m in self.holders],
        }
