"""Which open file descriptions do processes share? A scan of many processes at once.

``scan(pids)`` lists the fds of each process (``None``: every process in /proc),
groups them by open file description with one batched ``classify_files`` call, and
returns the descriptions held by more than one fd (all of them with
``include_unshared=True``), each with its target, access mode and members::

    >>> result = scan([1234, 1235])
    >>> for d in result.descriptions:
    ...     print(d.mode, d.target, [(m.pid, m.fd) for m in d.members])

What the scan guarantees:

- A process whose fds cannot be listed (it exited, or access is denied) is reported
  in ``Scan.skipped`` with a reason and never aborts the scan. Reasons:
  ``"no such process"`` (gone before the scan reached it, or never existed),
  ``"exited"`` (exited while being scanned; a zombie counts as exited),
  ``"permission denied"``, ``"fd table owner exited"`` (it shares its fd table with a
  process that exited mid-scan), or ``"error: <message>"``.
- Processes sharing one fd table (CLONE_FILES: threads given by tid, some runtimes)
  are read once, under the smallest pid: ``Scan.fd_table_shared`` lists each such
  set, smallest pid first, and the members of the descriptions name that pid only.
- Targets (``readlink /proc/PID/fd/N``), modes (``lstat`` of that link) and commands
  (``/proc/PID/comm``) are read only for the descriptions reported.
- It holds a small, bounded number of fds whatever the number of processes: its own
  reads of /proc hold one fd at a time (each file is opened, read and closed in turn;
  targets are read with readlink), and the native ``classify_tasks`` /
  ``classify_files`` calls hold one /proc directory plus at most 64 pidfds (fewer
  under a low ``RLIMIT_NOFILE``: a sixteenth of the soft limit); past that, a pid's
  start time guards it against reuse instead.
- Where kcmp(2) is blocked (seccomp, gVisor), ``classify_files`` decides what its
  exact fallbacks can (``allow_pidfd_getfd`` as given); the ``(pid, fd)`` pairs left
  undecided are listed in ``Scan.undecided`` and in no description.

Names. /proc gives file and command names as bytes; they are kept as ``str`` decoded
with ``os.fsdecode`` (bytes that are not UTF-8 become lone surrogates U+DC80..U+DCFF,
and ``os.fsencode`` gives the exact bytes back).

- Tables (``format_table``, ``escape``): every character that could drive a terminal
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

JSON schema of ``Scan.to_dict()`` (``kcmp-rs scan -J`` prints exactly this; ``-j``
prints one description object per line)::

    {
      "descriptions": [                  # ordered by smallest member (pid, fd)
        {
          "type": str,                   # REG DIR CHR BLK FIFO SOCK LNK, an anon
                                         # inode's name (eventfd, ...), or "?"
          "mode": str,                   # "r", "w", "rw", "path" (O_PATH) or "?"
          "target": str,                 # readlink of /proc/PID/fd/N ("?" if gone)
          "target_bytes_b64": str,       # only when the target is not UTF-8
          "members": [                   # ascending (pid, fd)
            {"pid": int, "fd": int, "command": str,
             "command_bytes_b64": str}   # only when the command is not UTF-8
          ]
        }
      ],
      "skipped": [{"pid": int, "reason": str}],   # ascending pid
      "processes_read": int,             # processes whose fds were read (sharers of
                                         # a read fd table included)
      "fds_classified": int,
      "undecided": [{"pid": int, "fd": int}],
      "fd_table_shared": [[int, ...]]    # pids sharing one fd table, smallest first
    }
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import kcmp_rs
from kcmp_rs import _native
from kcmp_rs._types import KcmpType, KcmpUnavailableError

__all__ = [
    "Description",
    "Member",
    "Scan",
    "Skipped",
    "classify_refs",
    "escape",
    "file_type",
    "format_table",
    "list_pids",
    "read_command",
    "read_mode",
    "read_target",
    "render_table",
    "scan",
    "summary",
]

Ref = tuple[int, int]

#: ``Skipped.reason`` values (plus ``"error: <message>"`` for anything else).
NO_SUCH_PROCESS = "no such process"
EXITED = "exited"
PERMISSION_DENIED = "permission denied"
OWNER_EXITED = "fd table owner exited"

# ---- result types ----


def _text_fields(name: str, text: str) -> dict[str, str]:
    """``{name: text}`` for JSON; see the module docstring for names not in UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return {
            name: raw.decode("utf-8", "replace"),
            f"{name}_bytes_b64": base64.b64encode(raw).decode("ascii"),
        }
    return {name: text}


@dataclass(frozen=True)
class Member:
    """One fd of one process: ``fd`` in ``pid``, whose command (comm) is ``command``."""

    pid: int
    fd: int
    command: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "fd": self.fd, **_text_fields("command", self.command)}


@dataclass(frozen=True)
class Description:
    """One open file description and the fds that refer to it.

    ``type`` is the file type (``REG``, ``FIFO``, ``SOCK``, an anon inode's name, ...).
    """

    target: str
    mode: str
    members: tuple[Member, ...]
    type: str = "?"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "mode": self.mode,
            **_text_fields("target", self.target),
            "members": [m.to_dict() for m in self.members],
        }


@dataclass(frozen=True)
class Skipped:
    """A process the scan could not read, and why (see the module docstring)."""

    pid: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "reason": self.reason}


@dataclass(frozen=True)
class Scan:
    """What ``scan()`` found. ``undecided`` lists the ``(pid, fd)`` pairs that could not
    be classified (kcmp blocked and no exact fallback); ``fd_table_shared`` the sets
    of pids that share one fd table, smallest (the one read) first."""

    descriptions: tuple[Description, ...]
    skipped: tuple[Skipped, ...]
    processes_read: int
    fds_classified: int
    undecided: tuple[Ref, ...] = ()
    fd_table_shared: tuple[tuple[int, ...], ...] = ()

    @property
    def shared(self) -> tuple[Description, ...]:
        """The descriptions held by more than one fd."""
        return tuple(d for d in self.descriptions if len(d.members) > 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "descriptions": [d.to_dict() for d in self.descriptions],
            "skipped": [s.to_dict() for s in self.skipped],
            "processes_read": self.processes_read,
            "fds_classified": self.fds_classified,
            "undecided": [{"pid": p, "fd": f} for p, f in self.undecided],
            "fd_table_shared": [list(g) for g in self.fd_table_shared],
        }


# ---- reading /proc ----


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
    if target is not None:
        if target.startswith("socket:["):
            return "SOCK"
        if target.startswith("pipe:["):
            return "FIFO"
        if target.startswith("anon_inode:"):
            return target[len("anon_inode:") :].strip("[]") or "anon"
    try:
        mode = os.stat(b"/proc/%d/fd/%d" % (pid, fd)).st_mode
    except OSError:
        return "?"
    return _TYPES.get(stat.S_IFMT(mode), "?")


def _is_zombie(pid: int) -> bool:
    data = _read_small(b"/proc/%d/stat" % pid)
    if data is None:
        return True
    fields = data[data.rfind(b")") + 2 :].split()
    return bool(fields) and fields[0] in (b"Z", b"X")


def _pid_gone(pid: int) -> bool:
    return not os.path.exists(b"/proc/%d" % pid) or _is_zombie(pid)


def _reason(err: OSError) -> str:
    if isinstance(err, ProcessLookupError):
        return EXITED
    if isinstance(err, PermissionError):
        return PERMISSION_DENIED
    return f"error: {err.strerror or err}"


# ---- classification ----


def _fd_tables(pids: list[int], skipped: dict[int, str]) -> list[tuple[int, ...]]:
    """The pids grouped by fd table, each group ascending; pids that could not be
    compared go to ``skipped``."""
    try:
        groups = kcmp_rs.classify_tasks(pids, KcmpType.FILES, missing="skip")
    except KcmpUnavailableError:
        return [(p,) for p in pids]  # cannot tell: read every process
    except OSError:
        # Some process refuses comparison (another user's): find which, one call each.
        allowed = []
        for pid in pids:
            try:
                kcmp_rs.kcmp(pid, pid, KcmpType.FILES)
            except KcmpUnavailableError:
                return [(p,) for p in pids if p not in skipped]
            except ProcessLookupError:
                skipped[pid] = NO_SUCH_PROCESS
            except OSError as err:
                skipped[pid] = _reason(err)
            else:
                allowed.append(pid)
        try:
            groups = kcmp_rs.classify_tasks(allowed, KcmpType.FILES, missing="skip")
        except OSError:  # a race with a process that changed meanwhile: read each
            return [(p,) for p in allowed]
    tables = [tuple(sorted(g)) for g in groups]
    seen = {p for g in tables for p in g}
    for pid in pids:
        if pid not in seen and pid not in skipped:  # left out as missing: a zombie, or gone
            skipped[pid] = EXITED if os.path.exists(b"/proc/%d" % pid) else NO_SUCH_PROCESS
    return tables


def classify_refs(
    refs: Sequence[Ref], *, allow_pidfd_getfd: bool = False
) -> tuple[list[tuple[Ref, ...]], list[Ref]]:
    """``classify_files(refs, missing="skip")`` that survives a blocked kcmp.

    Returns ``(groups, undecided)``: when kcmp is unavailable, the refs no exact
    fallback could decide are listed in ``undecided`` and left out of every group.
    """
    groups, undecided = _native.classify_files_partial(
        refs, missing="skip", allow_pidfd_getfd=allow_pidfd_getfd
    )
    if not undecided:
        return groups, []
    unknown = set(undecided)
    kept = (tuple(r for r in g if r not in unknown) for g in groups)
    return [g for g in kept if g], undecided


def _describe(group: Sequence[Ref], commands: dict[int, str]) -> Description:
    members = []
    for pid, fd in sorted(group):
        if pid not in commands:
            commands[pid] = read_command(pid)
        members.append(Member(pid, fd, commands[pid]))
    for m in members:  # the first member whose fd is still there names the target
        target = read_target(m.pid, m.fd)
        if target is not None:
            mode = read_mode(m.pid, m.fd)
            return Description(target, mode, tuple(members), file_type(m.pid, m.fd, target))
    return Description("?", "?", tuple(members), "?")


def scan(
    pids: Iterable[int] | None = None,
    *,
    include_unshared: bool = False,
    allow_pidfd_getfd: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Scan:
    """Find the open file descriptions the given processes share (see the module doc).

    ``pids``: the processes to read (None: every process in /proc). Only descriptions
    held by two fds or more are reported, all of them with ``include_unshared``.
    ``allow_pidfd_getfd`` lets ``classify_files`` copy fds to decide where kcmp is
    blocked. ``progress(done, total)`` is called as the fds of each process have been
    read (``total``: the number of processes; the classification follows).
    """
    if pids is None:
        wanted = list_pids()
    else:
        wanted = []
        for pid in pids:
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise TypeError(f"pids must be ints, not {type(pid).__name__}")
            if pid <= 0:
                raise ValueError(f"pid must be positive, got {pid}")
            wanted.append(pid)
        wanted = sorted(set(wanted))
    total = len(wanted)
    skipped: dict[int, str] = {}
    tables = _fd_tables(wanted, skipped)
    done = len(skipped)

    refs: list[Ref] = []
    read_tables: list[tuple[int, ...]] = []  # the reader first, then its sharers
    for table in tables:
        members = list(table)
        while members:
            pid = members.pop(0)
            try:
                fds = kcmp_rs.open_fds(pid)
            except OSError as err:
                skipped[pid] = _reason(err)
                continue
            if not fds and _is_zombie(pid):
                skipped[pid] = EXITED
                continue
            refs.extend((pid, fd) for fd in fds)
            read_tables.append((pid, *members))
            break
        done += len(table)
        if progress is not None:
            progress(done, total)
    if progress is not None and not tables and total:
        progress(total, total)  # every process was gone before its turn

    groups, undecided = classify_refs(refs, allow_pidfd_getfd=allow_pidfd_getfd)

    # A reader none of whose fds came back from classify_files exited in between.
    listed = {pid for pid, _ in refs}
    answered = {pid for group in groups for pid, _ in group} | {pid for pid, _ in undecided}
    processes_read = 0
    fd_table_shared = []
    for table in read_tables:
        reader, sharers = table[0], table[1:]
        if reader in listed and reader not in answered and _pid_gone(reader):
            skipped[reader] = EXITED
            for pid in sharers:
                skipped[pid] = EXITED if _pid_gone(pid) else OWNER_EXITED
            continue
        processes_read += len(table)
        if sharers:
            fd_table_shared.append(table)

    commands: dict[int, str] = {}
    descriptions = tuple(
        _describe(group, commands) for group in groups if include_unshared or len(group) > 1
    )
    return Scan(
        descriptions=descriptions,
        skipped=tuple(Skipped(pid, reason) for pid, reason in sorted(skipped.items())),
        processes_read=processes_read,
        fds_classified=sum(len(group) for group in groups),
        undecided=tuple(undecided),
        fd_table_shared=tuple(fd_table_shared),
    )


# ---- tables ----

_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """``text`` safe to print on a terminal, every character still visible (see the
    module docstring): ``"a\\x1b[31m\\n"`` shows as ``a\\x1b[31m\\n``."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart; a cell may hold several lines ("\\n"), which
    then stack under one another. Cells must already be escaped; the last column is
    not padded."""
    table = [[cell.split("\n") for cell in row] for row in [list(headers), *rows]]
    widths = [0] * len(headers)
    for row in table:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = []
    for row in table:
        for n in range(max(len(lines) for lines in row)):
            cells = [lines[n] if n < len(lines) else "" for lines in row]
            padded = [c.ljust(w) for c, w in zip(cells[:-1], widths)]
            out.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(out) + "\n"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(result: Scan) -> str:
    """One line: processes read, fds classified, descriptions shared, what was skipped."""
    shared = sum(1 for d in result.descriptions if len(d.members) > 1)
    parts = [
        _count(result.processes_read, "process read", "processes read"),
        _count(result.fds_classified, "fd classified", "fds classified"),
        _count(shared, "description shared", "descriptions shared"),
    ]
    if result.fd_table_shared:
        parts.append(_count(len(result.fd_table_shared), "fd table shared", "fd tables shared"))
    if result.undecided:
        parts.append(_count(len(result.undecided), "fd undecided", "fds undecided"))
    reasons: dict[str, int] = {}
    for s in result.skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    parts.append(
        _count(len(result.skipped), "process skipped", "processes skipped")
        + (f" ({skipped})" if skipped else "")
    )
    return ", ".join(parts)


def format_table(result: Scan) -> str:
    """The scan as an aligned table, one row per description, then a summary line.

    SHARED lists the members as ``PID,COMMAND,FD``, one per line (like lsfd's
    ENDPOINTS); names are escaped (``escape``).
    """
    rows = [
        [
            escape(d.type),
            d.mode,
            "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in d.members),
            escape(d.target),
        ]
        for d in result.descriptions
    ]
    table = render_table(["TYPE", "MODE", "SHARED", "TARGET"], rows) if rows else ""
    return table + summary(result) + "\n"
