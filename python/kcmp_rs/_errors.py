"""The enums of kcmp's arguments and answers (``KcmpType``, ``Order``) and the exception
classes of kcmp_rs."""

from __future__ import annotations

import enum
import errno as _errno
from collections.abc import Iterable
from typing import Any, Literal


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


# ---- exceptions ----
#
# Every error the package raises from the kernel is a KcmpError, and also the class
# Python itself picks for its errno (PEP 3151): `except ProcessLookupError` and
# `except KcmpError` both catch a missing process. Python picks that class only when
# OSError itself is called, never for a subclass, so each errno class gets a subclass of
# both: named ones where the package says more (ProcessGoneError, ...), generated ones
# (KcmpBlockingIOError, ...) for the rest. KcmpUnavailableError alone is only itself:
# its EPERM is a sandbox's refusal, not a process's, so `except PermissionError` (about
# one process) must not swallow it.

#: How a process went away: ``"absent"`` (no such process when the call began: never
#: there, or exited and reaped before), ``"exited"`` (exited during the call; its pid may
#: already name another process) or ``"zombie"`` (exited, not yet reaped by its parent).
GoneKind = Literal["absent", "exited", "zombie"]


def _rebuild(cls: type[KcmpError], args: tuple[Any, ...], state: dict[str, Any]) -> KcmpError:
    """Unpickles ``cls`` as pickle does a plain object: no ``__init__`` (whose keyword-only
    attributes the state holds), only OSError's own fields from ``args``."""
    exc = cls.__new__(cls, *args)
    OSError.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class KcmpError(OSError):
    """Base of every error kcmp_rs raises from the kernel (argument errors are TypeError
    and ValueError, raised before any syscall).

    An OSError with ``errno`` and ``strerror`` (the kernel's text, then what it means
    here), and also the OSError subclass Python picks for that errno. ``pid`` and
    ``fd`` name the process and fd at fault where one is known, else None.
    """

    pid: int | None
    fd: int | None

    def __init__(
        self, errno: int, strerror: str, *, pid: int | None = None, fd: int | None = None
    ) -> None:
        super().__init__(errno, strerror)
        self.pid = pid
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ProcessGoneError(KcmpError, ProcessLookupError):
    """ESRCH: the process ``pid`` is gone; ``kind`` says how (``GoneKind``): ``"absent"``,
    ``"exited"`` (during the call) or ``"zombie"`` (exited, awaiting reaping: a zombie's
    absent resources would otherwise compare equal to every other zombie's)."""

    pid: int
    kind: GoneKind

    def __init__(
        self, errno: int, strerror: str, *, pid: int, kind: GoneKind, fd: int | None = None
    ) -> None:
        super().__init__(errno, strerror, pid=pid, fd=fd)
        self.kind = kind


class FdNotOpenError(KcmpError):
    """EBADF: ``fd`` is not open in process ``pid``."""

    pid: int
    fd: int

    def __init__(self, errno: int, strerror: str, *, pid: int, fd: int) -> None:
        super().__init__(errno, strerror, pid=pid, fd=fd)


class ProcessAccessError(KcmpError, PermissionError):
    """EPERM: process ``pid`` may not be inspected by this one (kcmp and /proc/PID/fd
    need ptrace read access: the same uid, or CAP_SYS_PTRACE). Never the caller."""

    pid: int

    def __init__(self, errno: int, strerror: str, *, pid: int, fd: int | None = None) -> None:
        super().__init__(errno, strerror, pid=pid, fd=fd)


class KcmpUnavailableError(KcmpError):
    """kcmp(2) cannot be used by this process, or no exact fallback could decide.

    ``errno`` is ENOSYS (not in this kernel or emulated away) or EPERM (refused by a
    seccomp policy: even comparing this process with itself was denied). ``reason``
    says which and how to fix it (by default the message); ``undecided`` lists
    ``(pid, fd)`` pairs that no exact method could classify, where that applies.
    ``pid`` and ``fd`` are None.
    """

    reason: str
    undecided: tuple[tuple[int, int], ...]

    def __init__(
        self,
        errno: int,
        strerror: str,
        *,
        reason: str | None = None,
        undecided: Iterable[tuple[int, int]] = (),
    ) -> None:
        super().__init__(errno, strerror)
        self.reason = strerror if reason is None else reason
        self.undecided = tuple(undecided)


class NotAChannelError(ValueError):
    """The fd asked about is no end of a channel ``endpoints()`` follows (a pipe, a
    FIFO, a Unix socket, a pty or an eventfd): a regular file, a directory, a TCP
    socket, ... ``pid`` and ``fd`` name it, ``file_type`` is its type as the scan shows
    it (``REG``, ``DIR``, ``SOCK``, an anon inode's name)."""

    pid: int
    fd: int
    file_type: str

    def __init__(self, message: str, *, pid: int, fd: int, file_type: str) -> None:
        super().__init__(message)
        self.pid = pid
        self.fd = fd
        self.file_type = file_type

    def __reduce__(self) -> tuple[Any, ...]:
        return (_not_a_channel, (self.args[0], self.pid, self.fd, self.file_type))


def _not_a_channel(message: str, pid: int, fd: int, file_type: str) -> NotAChannelError:
    return NotAChannelError(message, pid=pid, fd=fd, file_type=file_type)


def _errno_classes() -> dict[type[OSError], type[KcmpError]]:
    """For each OSError subclass Python picks by errno (PEP 3151), a subclass of it and
    KcmpError, published in this module by name so that pickle finds it."""
    made: dict[type[OSError], type[KcmpError]] = {OSError: KcmpError}
    picked = {type(OSError(n, "")) for n in _errno.errorcode}
    for base in sorted(picked - {OSError}, key=lambda c: c.__name__):
        name = f"Kcmp{base.__name__}"
        doc = f"A KcmpError that is also Python's {base.__name__} (picked by its errno)."
        cls = type(name, (KcmpError, base), {"__module__": __name__, "__doc__": doc})
        globals()[name] = made[base] = cls
    return made


_BY_ERRNO_CLASS = _errno_classes()


def error_class(errno: int) -> type[KcmpError]:
    """The class of a kernel error with this errno that has no class of its own:
    KcmpError where Python's pick is OSError itself (EINVAL, EMFILE, ...), else the
    subclass of both (``KcmpBlockingIOError`` for EAGAIN, ``KcmpFileNotFoundError`` for
    ENOENT). The named classes above, which need a pid, are chosen by the binding."""
    return _BY_ERRNO_CLASS.get(type(OSError(errno, "")), KcmpError)
