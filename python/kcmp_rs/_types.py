"""Enums, result types and the one exception class of kcmp_rs."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class KcmpType(enum.IntEnum):
    """The resource kcmp(2) compares (``include/uapi/linux/kcmp.h``)."""

    FILE = 0
    VM = 1
    FILES = 2
    FS = 3
    SIGHAND = 4
    IO = 5
    SYSVSEM = 6
    EPOLL_TFD = 7


class Order(enum.IntEnum):
    """kcmp's answer: how the first object compares with the second in the kernel's order.

    The order is total and stable for the boot, but meaningless across boots and types.
    ``UNORDERED`` is reserved by the kernel and not returned by current kernels.
    """

    EQUAL = 0
    LESS = 1
    GREATER = 2
    UNORDERED = 3


@dataclass(frozen=True)
class Sharing:
    """Which task resources two processes share (``sharing()``).

    ``io`` and ``sysvsem`` are also True when neither process has an I/O context or a
    SysV semaphore undo list: the kernel compares the two absent objects as equal.
    """

    vm: bool
    files: bool
    fs: bool
    sighand: bool
    io: bool
    sysvsem: bool


@dataclass(frozen=True)
class Support:
    """What this process may use (``support()``).

    ``kcmp``: kcmp(2) answers (False in sandboxes that block it, on kernels without
    it, or after ``disable_kcmp()``). ``dupfd_query``: fcntl F_DUPFD_QUERY (Linux
    6.10+). ``pidfd_getfd``: copying another process's fd. ``reason``: why kcmp is
    unusable, naming the cause and the fix; empty when it is usable.
    """

    kcmp: bool
    dupfd_query: bool
    pidfd_getfd: bool
    reason: str


class KcmpUnavailableError(OSError):
    """kcmp(2) cannot be used by this process, or no exact fallback could decide.

    ``errno`` is ENOSYS (not in this kernel or emulated away) or EPERM (refused by a
    seccomp policy: even comparing this process with itself was denied). ``reason``
    says which and how to fix it; ``undecided`` lists ``(pid, fd)`` pairs that no
    exact method could classify, where that applies.
    """

    pid: int | None
    fd: int | None
    reason: str
    undecided: tuple[tuple[int, int], ...]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.pid = None
        self.fd = None
        self.reason = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        self.undecided = ()

    def __reduce__(self) -> Any:
        return (type(self), self.args, self.__dict__)
