"""Reading /proc for the scan and the CLI: which processes exist, and what one fd of one
process points to (target, access mode, file type) and its command name.

Every function holds at most one fd at a time and answers a placeholder ("?", None)
rather than raising when the process or the fd is gone: the callers report on many
processes, any of which may exit under them. Names come back as ``str`` decoded with
``os.fsdecode``, so ``os.fsencode`` gives the exact bytes back. No kcmp(2) here: this
module never imports the native module.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "file_type",
    "list_pids",
    "mode_of",
    "read_command",
    "read_mode",
    "read_target",
    "type_of",
]


def list_pids() -> list[int]:
    """Every process in /proc (numeric directories), ascending."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


def _read_small(path: bytes) -> bytes | None:
    """The start of a small /proc file (one read); None if it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_target(pid: int, fd: int) -> str | None:
    """``readlink /proc/PID/fd/N`` as str (``os.fsdecode``); None if it is gone."""
    try:
        return os.fsdecode(os.readlink(b"/proc/%d/fd/%d" % (pid, fd)))
    except OSError:
        return None


def read_mode(pid: int, fd: int) -> str:
    """The access mode of ``fd`` in ``pid``: "r", "w", "rw", "path" (O_PATH), or "?".

    The kernel gives each /proc/PID/fd/N link the permission bits of the open mode
    (r-x read, -wx write, rwx both, none for O_PATH): one lstat, a third of the cost
    of reading /proc/PID/fdinfo/N.
    """
    try:
        bits = os.lstat(b"/proc/%d/fd/%d" % (pid, fd)).st_mode
    except OSError:
        return "?"
    return mode_of(bits)


def mode_of(bits: int | None) -> str:
    """``read_mode``'s answer from the st_mode of the /proc/PID/fd/N link (None: gone)."""
    if bits is None:
        return "?"
    readable, writable = bool(bits & stat.S_IRUSR), bool(bits & stat.S_IWUSR)
    if readable and writable:
        return "rw"
    if readable:
        return "r"
    return "w" if writable else "path"


def read_command(pid: int) -> str:
    """The command name of ``pid`` (``/proc/PID/comm``), "?" if it is gone."""
    data = _read_small(b"/proc/%d/comm" % pid)
    if data is None:
        return "?"
    return os.fsdecode(data[:-1] if data.endswith(b"\n") else data)


_TYPES = {
    stat.S_IFREG: "REG",
    stat.S_IFDIR: "DIR",
    stat.S_IFCHR: "CHR",
    stat.S_IFBLK: "BLK",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "SOCK",
    stat.S_IFLNK: "LNK",
}


def file_type(pid: int, fd: int, target: str | None) -> str:
    """A short type for a description: from its target where that tells, else fstat."""
    told = _told_type(target)
    if told is not None:
        return told
    try:
        mode = os.stat(b"/proc/%d/fd/%d" % (pid, fd)).st_mode
    except OSError:
        return "?"
    return _TYPES.get(stat.S_IFMT(mode), "?")


def type_of(target: str, file_mode: int | None) -> str:
    """``file_type``'s answer from the target and the st_mode of the file itself (None:
    not read, or gone), as the native ``describe_refs`` gives them."""
    told = _told_type(target)
    if told is not None:
        return told
    return "?" if file_mode is None else _TYPES.get(stat.S_IFMT(file_mode), "?")


def _told_type(target: str | None) -> str | None:
    """The type a target names (sockets, pipes, anon inodes), else None."""
    if target is None:
        return None
    if target.startswith("socket:["):
        return "SOCK"
    if target.startswith("pipe:["):
        return "FIFO"
    if target.startswith("anon_inode:"):
        return target[len("anon_inode:") :].strip("[]") or "anon"
    return None
