"""Scanning many processes at once: which open file descriptions they share.

Presentation only: ``scan()`` checks its arguments and crosses into the native module
once (``_native.scan``: pinning, fd tables, listings, boundary values, one batched
classification, the descriptions and commands, all in Rust with the GIL released),
then builds the result types of ``_results`` from the native report. The contract
(guarantees, name rules, JSON schema) is ``scan()``'s docstring, which
``help(kcmp_rs.scan)`` shows.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable
from typing import Callable, SupportsIndex

from kcmp_rs._boundary import check_kind
from kcmp_rs._channels import Channel
from kcmp_rs._native import ScanReport
from kcmp_rs._native import scan as native_scan
from kcmp_rs._proc import decoded, decoded_names, list_pids
from kcmp_rs._results import (
    Description,
    Member,
    Scan,
    Skipped,
    deferred,
)

__all__ = ["scan", "scan_from_report", "scan_report"]


# ---- arguments: checked up front, with the native calls' classes and messages ----

_INT_MAX = 2**31 - 1


def _pid(value: object, name: str) -> int:
    """``value`` as a pid, taken and refused as the native calls do (``src/py/args.rs``):
    what ``operator.index`` takes (numpy integers, IntEnum), never a bool (numpy's
    included: ``bool`` in numpy 2, ``bool_`` before)."""
    tname = type(value).__name__
    complaint = f"{name} must be an int, not {tname}"
    if tname in ("bool", "bool_") or not hasattr(type(value), "__index__"):
        raise TypeError(complaint)
    try:
        pid = operator.index(value)  # type: ignore[arg-type]
    except TypeError as e:  # its own __index__ refused: that error is the cause
        raise TypeError(complaint) from e
    if not 1 <= pid <= _INT_MAX:
        raise ValueError(f"{name} must be a pid in 1..{_INT_MAX}, got {int(pid)}")
    return int(pid)


def _checked_pids(pids: Iterable[object]) -> list[int]:
    """The distinct pids, ascending. An iterable's own exception propagates as raised."""
    refused = TypeError(f"pids must be an iterable of ints, not {type(pids).__name__}")
    if isinstance(pids, (str, bytes)):
        raise refused
    try:
        items = iter(pids)
    except TypeError:
        if hasattr(pids, "__iter__"):  # an __iter__ that raised: its own error
            raise
        raise refused from None
    return sorted({_pid(p, "each pid in pids") for p in items})


def _check_flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _check_progress(progress: object) -> None:
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, not {type(progress).__name__}")


def scan(
    pids: Iterable[SupportsIndex] | None = None,
    *,
    include_unshared: bool = False,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
    boundary: str | None = None,
    ipc: bool = False,
) -> Scan:
    """Which open file descriptions do processes share? A scan of many processes at once.

    Lists the fds of each process, groups them by open file description with one
    batched ``classify_files`` call, and returns the descriptions held by more than
    one fd, each with its target, access mode and members::

        >>> result = kcmp_rs.scan([1234, 1235])
        >>> for d in result.descriptions:
        ...     print(d.mode, d.target, [(m.pid, m.fd) for m in d.members])

    Parameters:

    - ``pids``: the processes to read (None: every process in /proc); integer-like
      pids (``operator.index``: numpy integers, IntEnum) are taken, bools are not.
    - ``include_unshared``: report every description, not only those held by two
      fds or more (``Scan.shared`` still picks those).
    - ``allow_pidfd_getfd``: where kcmp is blocked, let ``classify_files`` copy fds
      (pidfd_getfd(2)) to decide.
    - ``progress(done, total)``: called as the fds of each process have been read
      (``total``: the number of processes; the classification follows).
    - ``boundary``: ``"pid"``, ``"mnt"``, ``"net"``, ``"user"``, ``"ipc"``, ``"uts"``
      (a namespace: the link text of ``/proc/PID/ns/KIND``, ``net:[4026531833]``) or
      ``"cgroup"`` (the process's cgroup: the path of the ``0::`` line of
      ``/proc/PID/cgroup``; on a host with only cgroup v1, its lines without their
      hierarchy numbers joined with ``;``). Each ``Member`` then carries its process's
      value (``boundary``) and each ``Description`` the distinct values of its holders,
      sorted (``boundaries``; fd-table sharers of a member count as holders): more
      than one, and the description crosses the boundary. Each value is read once per
      process, before any fd is classified; a process whose value cannot be read is
      skipped (reason below), never put on a side.
    - ``ipc``: also the channels between processes (``Scan.channels``): each pipe, FIFO,
      Unix socket pair and pty whose ends are held by two processes or more, its ends
      as the indices of their descriptions (which are reported, shared or not). Unix
      socket peers come from sock_diag, one dump per network namespace; what cannot be
      read (sock_diag refused) is said in ``Scan.channel_notes``, never guessed.

    Returns a ``Scan``: ``descriptions``, ``skipped``, ``undecided``, ``fd_table_shared``
    and the counts (guarantees and JSON schema below).

    Raises TypeError or ValueError for a bad argument, never for a process it cannot
    read (that one is skipped), and what ``progress`` raises. Every argument is
    checked before any work, with the classes and messages of the native calls:
    ``TypeError: each pid in pids must be an int, not float``,
    ``ValueError: each pid in pids must be a pid in 1..2147483647, got 0``,
    ``TypeError: pids must be an iterable of ints, not int``, ``TypeError:
    include_unshared must be a bool, not str`` (``allow_pidfd_getfd`` and ``ipc`` alike),
    ``TypeError: progress must be callable or None, not int``, ``ValueError: boundary
    must be one of 'pid', 'mnt', 'net', 'user', 'ipc', 'uts', 'cgroup' or None, got
    'x'``, ``TypeError: boundary must be a str or None, not int``.

    What the scan guarantees:

    - A process whose fds cannot be listed (it exited, or access is denied) is reported
      in ``Scan.skipped`` with a reason and never aborts the scan. Reasons:
      ``"no such process"`` (gone before the scan reached it, or never existed),
      ``"exited"`` (exited, started exiting, or had its pid reused while being
      scanned: its fds are in no description), ``"zombie"`` (it had exited and
      awaited reaping when the scan reached it),
      ``"permission denied"``, ``"fd table owner exited"`` (it shares its fd table with a
      process that exited mid-scan), ``"boundary unreadable: <message>"`` (its boundary
      value could not be read), or ``"error: <message>"``.
    - A process whose main thread has exited (``pthread_exit``) while its other
      threads run shows as a zombie under its pid: it is read through its smallest
      live thread id, and its fds are reported under that id.
    - Processes sharing one fd table (CLONE_FILES: threads given by tid, some runtimes)
      are read once, under the smallest pid: ``Scan.fd_table_shared`` lists each such
      set, smallest pid first, and the members of the descriptions name that pid only.
    - Targets (``readlink /proc/PID/fd/N``), modes (``lstat`` of that link) and commands
      (``/proc/PID/comm``) are read only for the descriptions reported.
    - It holds a small, bounded number of fds whatever the number of processes: its
      reads of /proc hold one fd at a time per thread (each file is opened, read and
      closed in turn; targets are read with readlink); the scan's pins (every process
      is pinned before any is read, to the end of the scan), the fd-table grouping and
      each classification thread (one per core the process may use, once the scan
      spans 4,096 fds or more; else one) hold one /proc directory plus at most 64
      pidfds each (fewer under a low ``RLIMIT_NOFILE``: a sixteenth of the soft
      limit); past that, a pid's start time guards it against reuse instead.
    - Where kcmp(2) is blocked (seccomp, gVisor), ``classify_files`` decides what its
      exact fallbacks can (``allow_pidfd_getfd`` as given); the ``(pid, fd)`` pairs left
      undecided are listed in ``Scan.undecided`` and in no description.

    Names. /proc gives file and command names as bytes; they are kept as ``str`` decoded
    with ``os.fsdecode`` (bytes that are not UTF-8 become lone surrogates U+DC80..U+DCFF,
    and ``os.fsencode`` gives the exact bytes back).

    - Tables (the ``kcmp-rs`` commands): every character that could drive a terminal
      is shown escaped, so the rest of the name still shows: ``\\n``, ``\\t``, ``\\r``,
      ``\\\\`` for a backslash, ``\\xNN`` for other ASCII control characters and for each
      byte that is not UTF-8, ``\\uNNNN`` / ``\\UNNNNNNNN`` for other unprintable
      characters (C1 controls, bidi overrides, line separators).
    - JSON (``to_dict()``): names keep every character (a newline stays a newline in the
      JSON string). A name that is not valid UTF-8 is given as ``target`` with each
      invalid byte replaced by U+FFFD, plus ``target_bytes_b64``: the standard base64 of
      the exact bytes. The ``*_bytes_b64`` field is present only then, so its absence
      means the text field is exact. Commands follow the same rule (``command`` /
      ``command_bytes_b64``). The documents are valid UTF-8.

    JSON schema of ``Scan.to_dict()`` (``kcmp-rs scan -J`` prints exactly this; its
    ``TypedDict`` is ``kcmp_rs._schema.ScanDict``)::

        {
          "schema_version": 2,               # changes only when a field changes meaning
          "descriptions": [                  # ordered by smallest member (pid, fd)
            {
              "type": str,                   # REG DIR CHR BLK FIFO SOCK LNK, an anon
                                             # inode's name (eventfd, ...), or "?"
              "mode": str,                   # "r", "w", "rw", "path" (O_PATH) or "?"
              "target": str,                 # readlink of /proc/PID/fd/N ("?" if gone)
              "target_bytes_b64": str,       # only when the target is not UTF-8
              "members": [                   # ascending (pid, fd)
                {"pid": int, "fd": int, "command": str,
                 "command_bytes_b64": str,   # only when the command is not UTF-8
                 "boundary": str}            # only with a boundary: its process's value
              ],
              "boundaries": [str]            # only with a boundary: the holders'
                                             # distinct values, sorted
            }
          ],
          "skipped": [{"pid": int, "reason": str}],   # ascending pid
          "processes_read": int,             # processes whose fds were read (sharers of
                                             # a read fd table included)
          "fds_classified": int,
          "undecided": [{"pid": int, "fd": int}],
          "fd_table_shared": [[int, ...]],   # pids sharing one fd table, smallest first
          "channels": [                      # only with ipc: channels between processes
            {"kind": str,                    # "pipe", "fifo", "unix" or "pty"
             "ends": [{"side": str,          # read write socket master slave
                       "descriptions": [int]}]}   # indices into "descriptions"
          ],
          "channel_notes": [str]             # only with ipc: what could not be read
        }

    ``kcmp-rs scan -j`` (JSON Lines) carries all of it, one object per line, each with a
    ``record`` field: first ``{"record": "header", "schema_version": 2, "command":
    "scan"}``, then one ``description`` record per description (the object above plus
    ``record``), one ``skipped`` record per skipped process, one ``undecided`` record per
    undecided fd, one ``fd_table_shared`` record (``{"pids": [...]}``) per shared fd
    table, one ``channel`` record per channel (with ipc), and last ``{"record":
    "summary", "processes_read": int, "fds_classified": int}`` (with ipc and notes,
    ``"channel_notes"`` too).
    """
    given = None if pids is None else _checked_pids(pids)
    _check_flag(include_unshared, "include_unshared")
    _check_flag(allow_pidfd_getfd, "allow_pidfd_getfd")
    _check_flag(ipc, "ipc")
    _check_progress(progress)
    kind = check_kind(boundary)
    report = native_scan(
        list_pids() if given is None else given,
        include_unshared,
        allow_pidfd_getfd,
        kind,
        progress,
        ipc,
    )
    return scan_from_report(report)


def scan_report(
    pids: list[int] | None,
    *,
    include_unshared: bool = False,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
    boundary: str | None = None,
    ipc: bool = False,
) -> ScanReport:
    """``scan()``'s native report (arguments as checked by the CLI's parser), for the
    CLI to write as JSON without building the result types."""
    wanted = list_pids() if pids is None else _checked_pids(pids)
    return native_scan(
        wanted, include_unshared, allow_pidfd_getfd, check_kind(boundary), progress, ipc
    )


def scan_from_report(report: ScanReport) -> Scan:
    """The result types of a native report, built as they are read: the descriptions on
    the first access of ``descriptions``, each one's members on the first access of its
    ``members`` (names decoded with ``os.fsdecode``)."""
    return deferred(
        Scan,
        {
            "skipped": tuple(Skipped(pid, reason) for pid, reason in report.skipped),
            "processes_read": report.processes_read,
            "fds_classified": report.fds_classified,
            "undecided": tuple(report.undecided),
            "fd_table_shared": tuple(tuple(t) for t in report.fd_table_shared),
            "channels": _channels(report),
            "channel_notes": tuple(report.channel_notes()),
        },
        {"descriptions": lambda: _descriptions(report)},
    )


def _channels(report: ScanReport) -> tuple[Channel, ...] | None:
    rows = report.channels()
    if rows is None:
        return None
    return tuple(
        Channel(kind, tuple((side, tuple(on)) for side, on in ends)) for kind, ends in rows
    )


def _descriptions(report: ScanReport) -> tuple[Description, ...]:
    commands = decoded_names(report.commands())
    sides = {p: os.fsdecode(v) for p, v in report.boundary_of()}

    def members(i: int) -> Callable[[], tuple[Member, ...]]:
        return lambda: tuple(
            Member(p, f, commands.get(p, "?"), sides.get(p)) for p, f in report.members(i)
        )

    return tuple(
        deferred(
            Description,
            {
                "target": decoded(target),
                "mode": mode,
                "type": kind,
                "boundaries": tuple(os.fsdecode(b) for b in bounds),
            },
            {"members": members(i)},
        )
        for i, (target, kind, mode, bounds) in enumerate(report.descriptions())
    )
