"""A tiny seccomp BPF filter in ctypes, to make kcmp(2) unusable in a test child.

``install_filter`` is irreversible and applies to the calling thread and everything it
forks later: call it only in a forked, single-threaded child (``run_in_child``). It
mimics what sandboxes do (Docker's profile answers EPERM, gVisor ENOSYS, old firejail
kills), not a security boundary: it matches the native syscall numbers of one
architecture only.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Union

__all__ = ["KcmpAction", "SeccompUnsupported", "install_filter", "syscall_numbers"]

# <linux/prctl.h>, <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_DATA = 0x0000FFFF
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
F_DUPFD_QUERY = 1027
#: pidfd_getfd(2): one number on every architecture (syscalls added since 5.1 share it).
NR_PIDFD_GETFD = 438

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG1_LOW = 16 + 8 * 1  # args[1], low 32 bits (both arches are little-endian)

#: socket(2)'s number per machine, and the family a netlink socket asks for.
_NR_SOCKET = {"x86_64": 41, "aarch64": 198}
AF_NETLINK = 16
_OFF_ARG0_LOW = 16

# machine -> (AUDIT_ARCH_*, __NR_kcmp, __NR_fcntl)
_ARCHES = {
    "x86_64": (0xC000003E, 312, 72),
    "aarch64": (0xC00000B7, 272, 25),
}

#: ``("errno", EPERM)``, ``("errno", ENOSYS)``, ``("kill",)``, or ``("allow",)`` (kcmp works:
#: only F_DUPFD_QUERY is refused, as on a kernel before 6.10).
KcmpAction = Union[tuple[str, int], tuple[str]]


class SeccompUnsupported(RuntimeError):
    """This machine's architecture is not in the table above."""


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def syscall_numbers() -> tuple[int, int, int]:
    """(AUDIT_ARCH, __NR_kcmp, __NR_fcntl) for this machine; SeccompUnsupported if unknown."""
    try:
        return _ARCHES[platform.machine()]
    except KeyError:
        raise SeccompUnsupported(f"no seccomp table for {platform.machine()}") from None


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(k: int, jt: int, jf: int) -> tuple[int, int, int, int]:
    return (BPF_JMP_JEQ_K, jt, jf, k)


def _action(spec: KcmpAction) -> int:
    if spec == ("kill",):
        return SECCOMP_RET_KILL_PROCESS
    if spec == ("allow",):
        return SECCOMP_RET_ALLOW
    if len(spec) == 2 and spec[0] == "errno":
        return SECCOMP_RET_ERRNO | (int(spec[1]) & SECCOMP_RET_DATA)
    raise ValueError(f"kcmp action must be ('errno', N), ('kill',) or ('allow',), got {spec!r}")


def build_program(
    kcmp: KcmpAction,
    dupfd_query_errno: int | None = None,
    pidfd_getfd_errno: int | None = None,
    netlink_errno: int | None = None,
) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions (see ``install_filter``)."""
    arch, nr_kcmp, nr_fcntl = syscall_numbers()
    prog = [
        _stmt(BPF_LD_W_ABS, _OFF_ARCH),
        _jump(arch, 1, 0),
        _stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),  # a foreign ABI: refuse everything
        _stmt(BPF_LD_W_ABS, _OFF_NR),
        _jump(nr_kcmp, 0, 1),
        _stmt(BPF_RET_K, _action(kcmp)),
    ]
    if pidfd_getfd_errno is not None:
        prog += [
            _jump(NR_PIDFD_GETFD, 0, 1),  # A still holds nr
            _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (pidfd_getfd_errno & SECCOMP_RET_DATA)),
        ]
    if netlink_errno is not None:
        prog += [
            _jump(_NR_SOCKET[platform.machine()], 0, 4),  # A still holds nr
            _stmt(BPF_LD_W_ABS, _OFF_ARG0_LOW),
            _jump(AF_NETLINK, 0, 1),
            _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (netlink_errno & SECCOMP_RET_DATA)),
            _stmt(BPF_LD_W_ABS, _OFF_NR),  # A holds nr again for what follows
        ]
    if dupfd_query_errno is not None:
        prog += [
            _jump(nr_fcntl, 0, 3),  # A still holds nr
            _stmt(BPF_LD_W_ABS, _OFF_ARG1_LOW),
            _jump(F_DUPFD_QUERY, 0, 1),
            _stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (dupfd_query_errno & SECCOMP_RET_DATA)),
        ]
    prog.append(_stmt(BPF_RET_K, SECCOMP_RET_ALLOW))
    return prog


def install_filter(
    kcmp: KcmpAction = ("errno", 1),
    dupfd_query_errno: int | None = None,
    pidfd_getfd_errno: int | None = None,
    netlink_errno: int | None = None,
) -> None:
    """Installs a seccomp filter on the calling thread (and its future children).

    ``kcmp``: ``("errno", E)`` makes every kcmp(2) fail with errno E (EPERM like
    Docker's default profile, ENOSYS like gVisor with CAP_SYS_PTRACE);
    ``("kill",)`` kills the process with SIGSYS when it calls kcmp; ``("allow",)`` lets
    it through. With
    ``dupfd_query_errno``, ``fcntl(fd, F_DUPFD_QUERY, ...)`` fails with that errno (as
    on a kernel before 6.10 when it is EINVAL); with ``pidfd_getfd_errno``,
    pidfd_getfd(2) fails with that errno; with ``netlink_errno``, socket(AF_NETLINK, ...)
    (sock_diag) does. Everything else is allowed. Raises
    OSError if prctl refuses, SeccompUnsupported on an unknown architecture.
    """
    prog = build_program(kcmp, dupfd_query_errno, pidfd_getfd_errno, netlink_errno)
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), ctypes.cast(filters, ctypes.POINTER(_SockFilter)))
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_NO_NEW_PRIVS) failed: errno {e}")
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_SECCOMP) failed: errno {e}")
