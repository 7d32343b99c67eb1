"""kcmp_rs: typed, batched access to Linux kcmp(2).

Which processes share which kernel resources: the same open file description behind
two fds, the same address space, fd table, filesystem context, signal handlers, I/O
context, SysV semaphore undo list, or epoll target. ``scan()`` answers it for many
processes at once: the open file descriptions they share (``kcmp-rs scan``).
"""

from __future__ import annotations

import os as _os
import sys as _sys
from typing import SupportsIndex

if not _sys.platform.startswith("linux"):
    raise ImportError(
        f"kcmp_rs requires Linux (kcmp(2) is a Linux system call), not {_sys.platform}"
    )

from kcmp_rs import _native
from kcmp_rs._channels import Channel
from kcmp_rs._config import kcmp_disabled_by_environment as _kcmp_disabled_by_environment
from kcmp_rs._config import thread_limit_from_environment as _thread_limit_from_environment
from kcmp_rs._endpoints import End, Endpoints, endpoints
from kcmp_rs._errors import (
    FdNotOpenError,
    KcmpError,
    KcmpType,
    KcmpUnavailableError,
    NotAChannelError,
    Order,
    ProcessAccessError,
    ProcessGoneError,
)
from kcmp_rs._escapes import Container, Escape, Escapes, escapes
from kcmp_rs._leaks import FdLeakCheck
from kcmp_rs._metrics import Metrics, metrics
from kcmp_rs._native import (
    classify_fds,
    classify_files,
    classify_tasks,
    disable_kcmp,
    kcmp,
    open_fds,
    same_epoll_target,
    same_file,
)
from kcmp_rs._queries import epoll_targets, holders, shared_files, who
from kcmp_rs._results import (
    ChildHolder,
    Description,
    EpollTarget,
    FdLeaks,
    FileDescription,
    Holders,
    LeakedFd,
    Member,
    Scan,
    SharedFiles,
    Sharing,
    Skipped,
    Support,
    Who,
    WhoFile,
)
from kcmp_rs._scan import scan

__version__: str = _native.__version__

if _kcmp_disabled_by_environment(_os.environ):
    disable_kcmp()
_native.set_thread_limit(_thread_limit_from_environment(_os.environ))

__all__ = [
    "Channel",
    "ChildHolder",
    "Container",
    "Description",
    "End",
    "Endpoints",
    "EpollTarget",
    "Escape",
    "Escapes",
    "FdLeakCheck",
    "FdLeaks",
    "FdNotOpenError",
    "FileDescription",
    "Holders",
    "KcmpError",
    "KcmpType",
    "KcmpUnavailableError",
    "LeakedFd",
    "Member",
    "Metrics",
    "NotAChannelError",
    "Order",
    "ProcessAccessError",
    "ProcessGoneError",
    "Scan",
    "SharedFiles",
    "Sharing",
    "Skipped",
    "Support",
    "Who",
    "WhoFile",
    "__version__",
    "classify_fds",
    "classify_files",
    "classify_tasks",
    "disable_kcmp",
    "endpoints",
    "epoll_targets",
    "escapes",
    "holders",
    "kcmp",
    "metrics",
    "open_fds",
    "same_epoll_target",
    "same_file",
    "same_files",
    "same_fs",
    "same_io",
    "same_sighand",
    "same_sysvsem",
    "same_vm",
    "scan",
    "shared_files",
    "sharing",
    "support",
    "who",
]


def same_vm(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share one address space (CLONE_VM, threads). Two
    kernel threads (no address space at all) share none.

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.VM)


def same_files(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share one fd table (CLONE_FILES).

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.FILES)


def same_fs(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share root, cwd and umask (CLONE_FS).

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.FS)


def same_sighand(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share one signal handler table (CLONE_SIGHAND).

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.SIGHAND)


def same_io(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share an I/O context (CLONE_IO).

    True also when neither has one: the kernel compares two absent contexts as equal.

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.IO)


def same_sysvsem(pid1: SupportsIndex, pid2: SupportsIndex) -> bool:
    """Whether the two processes share a SysV semaphore undo list (CLONE_SYSVSEM).

    True also when neither has one: the kernel compares two absent lists as equal.

    ``pid1``, ``pid2``: process or thread ids (ints, or what ``operator.index`` takes;
    never a bool). Returns True when the kernel finds one object behind both.

    Raises ``ProcessGoneError`` (a ``ProcessLookupError``) when either does not exist
    or is a zombie, ``ProcessAccessError`` (a ``PermissionError``) when ptrace read
    access to either is refused, ``KcmpUnavailableError`` where kcmp(2) is blocked
    (nothing else can tell), TypeError or ValueError for a pid that is not one.
    """
    return _native.same_task(pid1, pid2, KcmpType.SYSVSEM)


def sharing(pid1: SupportsIndex, pid2: SupportsIndex) -> Sharing:
    """Which of the six task resources the two processes share: a ``Sharing`` with
    ``vm``, ``files``, ``fs``, ``sighand``, ``io`` and ``sysvsem`` (each as the
    ``same_*`` call of its name answers, ``io`` and ``sysvsem`` True also when neither
    process has one).

    ``pid1``, ``pid2``: process or thread ids. Returns a ``Sharing`` of six bools.

    Raises as the ``same_*`` calls do: ``ProcessGoneError`` (a ``ProcessLookupError``),
    ``ProcessAccessError`` (a ``PermissionError``), ``KcmpUnavailableError`` where
    kcmp(2) is blocked, TypeError or ValueError for a pid that is not one.
    """
    return Sharing(*_native.sharing(pid1, pid2))


def support(*, refresh: bool = False) -> Support:
    """What this process can use: kcmp, F_DUPFD_QUERY, pidfd_getfd.

    Probed once, lazily, and again in a forked child; ``refresh=True`` probes anew.

    Returns a ``Support``: ``kcmp``, ``dupfd_query``, ``pidfd_getfd`` (bools) and
    ``reason``: where kcmp is unusable, the cause and the fix ("" where usable).

    Raises ``OSError`` (EMFILE, ENFILE, ENOMEM) naming the limit and the fix when out
    of fds (or memory) a probe cannot run, never a capability reported absent; nothing
    is cached then. TypeError when ``refresh`` is not a bool.
    """
    kcmp_ok, dupfd_query, pidfd_getfd, reason = _native.support(refresh=refresh)
    return Support(kcmp=kcmp_ok, dupfd_query=dupfd_query, pidfd_getfd=pidfd_getfd, reason=reason)
