"""The ``kcmp-rs`` subcommands that answer one question each: ``holders PID FD`` (who
holds one open file description), ``epoll PID [EPFD]`` (what an epoll set watches) and
``share PID1 PID2`` (what two processes share), built on ``holders()``,
``epoll_targets()`` and ``shared_files()``.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Any

import kcmp_rs
from kcmp_rs import _native, baseline
from kcmp_rs._errors import KcmpType, KcmpUnavailableError
from kcmp_rs._proc import read_command, shown, shown_one
from kcmp_rs._queries import (
    epoll_sets_from_report,
    holders_from_report,
    holders_report,
    shared_files,
    who,
)
from kcmp_rs._results import SCHEMA_VERSION, SharedFiles, Who
from kcmp_rs._text import text_fields
from kcmp_rs.cli._common import (
    CommandError,
    add_json_flags,
    allow_pidfd_getfd_flag,
    command,
    explain,
    given_pids,
    modes_and_targets,
    pid_arg,
    pids_flag,
    print_json,
    report_undecided,
    searched,
    unavailable_reason,
)
from kcmp_rs.cli._io import EXIT_INCOMPLETE, Parser, note, out, write_native
from kcmp_rs.cli._peers import add_peers
from kcmp_rs.cli._render import escape, holders_dot, render_table, shared_files_dot

__all__ = ["add_commands"]


def _fd_arg(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"not an fd: {text!r}")
    return int(text)


def add_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    """Registers ``share``, ``holders``, ``epoll``, ``who`` and ``peers``."""
    share = command(
        sub,
        "share",
        help="what two processes share",
        description="Show which of the six task resources (VM, FILES, FS, SIGHAND, IO, "
        "SYSVSEM) two processes share, the open file descriptions they both hold "
        "(inherited, passed, or one fd table), and the files both have open through "
        "different descriptions (separate opens).",
        example="  kcmp-rs share 1234 1240",
    )
    share.add_argument("pid1", type=pid_arg, metavar="PID1")
    share.add_argument("pid2", type=pid_arg, metavar="PID2")
    allow_pidfd_getfd_flag(share)
    add_json_flags(share, "JSON Lines: one record per line (header, resource, ...)", dot=True)
    share.set_defaults(func=_cmd_share, parser=share)

    hold = command(
        sub,
        "holders",
        help="every fd that refers to one open file description",
        description="List every (pid, fd) that refers to the open file description of FD "
        "in PID: who still holds the write end of a pipe, who else has a socket or a lock "
        "file open as the same description. One kcmp(2) per candidate fd. All processes "
        "by default; -p narrows the search.",
        example="  kcmp-rs holders 1234 5\n  kcmp-rs holders 1234 5 -p 1240,1241 -J",
    )
    hold.add_argument("pid", type=pid_arg, metavar="PID")
    hold.add_argument("fd", type=_fd_arg, metavar="FD")
    pids_flag(hold, "search only these processes (repeatable)")
    add_json_flags(hold, "JSON Lines: one record per line (header, description, ...)", dot=True)
    allow_pidfd_getfd_flag(hold)
    hold.set_defaults(func=_cmd_holders, parser=hold)

    epoll = command(
        sub,
        "epoll",
        help="what an epoll set watches, checked against what is open now",
        description="For every epoll fd of PID (or EPFD alone): each registration from "
        "/proc/PID/fdinfo (TFD: the fd number it was registered under, EVENTS, DATA), the "
        "fds that refer to the registered file now (found with kcmp(2) KCMP_EPOLL_TFD), "
        "and STATUS: open (TFD still names that file), closed (TFD is not open) or "
        "reused (TFD now names another file). DATA is the 64-bit value registered; "
        "Python's select.epoll sets only its low 32 bits (the fd), so the high half of "
        "a set made there is whatever was in memory.",
        example="  kcmp-rs epoll 1234\n  kcmp-rs epoll 1234 7 -p 1240",
    )
    epoll.add_argument("pid", type=pid_arg, metavar="PID")
    epoll.add_argument("epfd", type=_fd_arg, metavar="EPFD", nargs="?")
    pids_flag(epoll, "also look for holders in these processes (repeatable)")
    add_json_flags(epoll, "JSON Lines: one record per line (header, registration, ...)")
    epoll.set_defaults(func=_cmd_epoll, parser=epoll)

    whom = command(
        sub,
        "who",
        help="who has a file open, by open file description",
        description="For each PATH (the file it resolves to: symlinks followed, matched "
        "by device and inode), every process and fd that has it open, grouped by open "
        "file description: fds in one row share one description (dup(), inherited), "
        "separate opens are separate rows. MODE is the access mode, OFFSET the file "
        "position the row's fds share. All processes by default; -p narrows the search.",
        example="  kcmp-rs who /var/log/syslog\n  kcmp-rs who data.db data.db-wal -p 1234 -J",
    )
    whom.add_argument("paths", nargs="+", metavar="PATH")
    pids_flag(whom, "search only these processes (repeatable)")
    add_json_flags(whom, "JSON Lines: one record per line (header, file, ...)")
    allow_pidfd_getfd_flag(whom)
    whom.set_defaults(func=_cmd_who, parser=whom)
    add_peers(sub, _fd_arg)


# ---- holders ----


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _cmd_holders(args: argparse.Namespace) -> int:
    pids = given_pids(args)
    try:
        report = holders_report(args.pid, args.fd, pids, allow_pidfd_getfd=args.allow_pidfd_getfd)
    except OSError as err:
        raise CommandError(explain(err, args.pid)) from None
    found = holders_from_report(report)
    records = {"description": "description", "skipped": "skipped", "undecided": "undecided"}
    if args.dot:
        out(holders_dot(found))
    elif (args.json or args.json_lines) and write_native(
        lambda fd: report.write_json(fd, args.json_lines)
    ):
        pass
    elif not print_json(found.to_dict(), args, "holders", records):
        d = found.description
        out(f"fd {args.fd} of process {args.pid}: {d.type} {d.mode} {escape(d.target)}\n")
        rows = [[str(m.pid), escape(m.command), str(m.fd)] for m in found.members]
        out(render_table(["PID", "COMMAND", "FD"], rows))
        procs = len({m.pid for m in found.members})
        out(
            f"{_count(len(found.members), 'fd')} in {_count(procs, 'process')}; "
            f"{_count(found.processes_read, 'process')} read, "
            f"{_count(found.fds_compared, 'fd')} compared, {len(found.skipped)} skipped\n"
        )
    return searched(found, args, pids is not None)


# ---- epoll ----


def _cmd_epoll(args: argparse.Namespace) -> int:
    pid: int = args.pid
    try:
        if args.epfd is None:
            report = _native.epoll_sets(pid, pids=given_pids(args))
        else:
            report = _native.epoll_sets(pid, args.epfd, given_pids(args))
    except OSError as err:
        raise CommandError(explain(err, pid)) from None
    if (args.json or args.json_lines) and write_native(
        lambda fd: report.write_json(fd, args.json_lines)
    ):
        return 0
    sets = epoll_sets_from_report(report)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "pid": pid,
        "registrations": [{"epfd": epfd, **t.to_dict()} for epfd, targets in sets for t in targets],
    }
    if print_json(doc, args, "epoll", {"registrations": "registration"}):
        return 0
    rows = [
        [
            str(epfd),
            str(t.tfd),
            f"{t.events:#x}",
            f"{t.data:#x}",
            t.status,
            "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in t.holders) or "-",
        ]
        for epfd, targets in sets
        # The kernel lists a set's registrations in its own order: by fd number here.
        for t in sorted(targets, key=lambda t: (t.tfd, t.index))
    ]
    out(render_table(["EPFD", "TFD", "EVENTS", "DATA", "STATUS", "HOLDERS"], rows))
    count = sum(len(t) for _, t in sets)
    out(f"{_count(len(sets), 'epoll set')} in process {pid}, {_count(count, 'registration')}\n")
    return 0


# ---- share ----

_RESOURCES = (
    ("VM", "vm"),
    ("FILES", "files"),
    ("FS", "fs"),
    ("SIGHAND", "sighand"),
    ("IO", "io"),
    ("SYSVSEM", "sysvsem"),
)

#: Resources a process may lack altogether: kcmp compares two absent ones as equal.
_MAYBE_ABSENT = {"IO": KcmpType.IO, "SYSVSEM": KcmpType.SYSVSEM}
_NONE = {
    "IO": "neither process has an I/O context",
    "SYSVSEM": "neither process has a SysV semaphore undo list",
}


def _absent(pids: Sequence[int]) -> set[tuple[int, str]]:
    """Which of IO and SYSVSEM each process lacks: compared with a zombie child of
    ours, which has neither (exit clears both), the kernel answers "equal" exactly
    when the process has none either. Raw kcmp (the ctypes baseline): the package
    itself refuses to compare a zombie."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the child exits at once
        os._exit(0)
    try:
        os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)  # a zombie until reaped
        return {
            (pid, name)
            for pid in pids
            for name, ty in _MAYBE_ABSENT.items()
            if baseline.kcmp(pid, child, ty) == 0
        }
    finally:
        os.waitpid(child, 0)


def _resource_rows(pid1: int, pid2: int) -> list[list[str]] | None:
    """One row per task resource; None where kcmp is blocked (no fallback compares
    them, but the fds may still be answered)."""
    try:
        shared = kcmp_rs.sharing(pid1, pid2)
    except KcmpUnavailableError:
        return None
    except OSError as err:
        raise CommandError(explain(err, pid1)) from None
    absent = _absent([pid1, pid2]) if shared.io or shared.sysvsem else set()
    rows = []
    for name, attr in _RESOURCES:
        same = getattr(shared, attr)
        if same and {(pid1, name), (pid2, name)} <= absent:
            rows.append([name, "no", _NONE[name]])
        else:
            rows.append([name, "yes" if same else "no", ""])
    return rows


def _fds(fds: Sequence[int]) -> str:
    return ",".join(map(str, fds)) or "-"


def _describe_fd(pid: int, fd: int) -> tuple[str, str, str]:
    target, mode, kind = shown_one(pid, fd)
    return kind, mode, target


def _cmd_share(args: argparse.Namespace) -> int:
    pid1: int = args.pid1
    pid2: int = args.pid2
    # The graph draws the shared descriptions only: no task resources to compare.
    resources = None if args.dot else _resource_rows(pid1, pid2)
    try:
        found = shared_files(pid1, pid2, allow_pidfd_getfd=args.allow_pidfd_getfd)
    except OSError as err:
        raise CommandError(explain(err, pid1)) from None
    if args.dot:
        out(shared_files_dot(found, read_command, _describe_fd))
        if found.undecided:
            report_undecided(found.undecided, args.allow_pidfd_getfd)
        return EXIT_INCOMPLETE if found.undecided else 0
    if resources is None:
        resources = [[name, "?", "unknown: needs kcmp(2)"] for name, _ in _RESOURCES]
    if print_json(_share_document(found, resources), args, "share", _SHARE_RECORDS):
        return _share_status(found, resources, args.allow_pidfd_getfd)
    if pid1 == pid2:
        out(
            f"Process {pid1} trivially shares everything with itself: every task resource "
            f"and all its {len(found.shared)} open file descriptions.\n"
        )
        return 0
    out(render_table(["RESOURCE", "SHARED", "NOTE"], resources))
    tail = f"; {len(found.undecided)} fds undecided" if found.undecided else ""
    table = " (one fd table)" if found.same_fd_table else ""
    count = len(found.shared) or "none"
    out(f"\nOpen file descriptions shared by {pid1} and {pid2}{table}: {count}{tail}\n")
    if found.shared:
        shown = modes_and_targets([(pid1, a[0]) for a, _ in found.shared])
        rows = [[_fds(a), _fds(b), *s] for (a, b), s in zip(found.shared, shown)]
        out(render_table([f"FDS OF {pid1}", f"FDS OF {pid2}", "MODE", "TARGET"], rows))
    if found.reopened:
        out(f"\nFiles both have open through different descriptions: {len(found.reopened)}\n")
        firsts = [(pid1, a[0]) for a, _ in found.reopened]  # never an empty side
        rows = [
            [_fds(a), _fds(b), target]
            for (a, b), (_, target) in zip(found.reopened, modes_and_targets(firsts))
        ]
        out(render_table([f"FDS OF {pid1}", f"FDS OF {pid2}", "TARGET"], rows))
    return _share_status(found, resources, args.allow_pidfd_getfd)


def _share_status(found: SharedFiles, resources: list[list[str]], allow: bool) -> int:
    """The notes of an incomplete answer, and the exit status."""
    if resources[0][1] == "?":
        note(
            "incomplete answer: the task resources (VM, FILES, FS, SIGHAND, IO, SYSVSEM) "
            f"need kcmp(2), which has no fallback: {unavailable_reason()}"
        )
    if found.undecided:
        report_undecided(found.undecided, allow)
    return EXIT_INCOMPLETE if resources[0][1] == "?" or found.undecided else 0


#: ``kcmp-rs share -j``: the record kind of each list of the document.
_SHARE_RECORDS = {
    "resources": "resource",
    "shared": "shared",
    "reopened": "reopened",
    "undecided": "undecided",
}


def _share_document(found: SharedFiles, resources: list[list[str]]) -> dict[str, Any]:
    """``kcmp-rs share -J``: ``SharedFiles.to_dict()`` with the task resources (``shared``
    true, false, or null where kcmp is blocked; ``note`` as the table's) and, for each
    pair, what the table shows of its file (``mode`` and ``target`` of a shared
    description, ``target`` of a file opened separately)."""
    doc: dict[str, Any] = dict(found.to_dict())
    doc["resources"] = [
        {"resource": name, "shared": {"yes": True, "no": False}.get(said), "note": why}
        for name, said, why in resources
    ]
    firsts = [(found.pid1, a[0]) for a, _ in found.shared]
    for pair, (target, mode, _) in zip(doc["shared"], shown(firsts)):
        pair.update(mode=mode, **text_fields("target", target))
    firsts = [(found.pid1, a[0]) for a, _ in found.reopened]
    for pair, (target, _, _) in zip(doc["reopened"], shown(firsts)):
        pair.update(text_fields("target", target))
    return doc


# ---- who ----


def _cmd_who(args: argparse.Namespace) -> int:
    pids = given_pids(args)
    try:
        found = who(args.paths, pids, allow_pidfd_getfd=args.allow_pidfd_getfd)
    except OSError as err:
        if err.filename is not None:  # a path os.stat refused: Python's own words
            raise CommandError(f"{escape(os.fsdecode(err.filename))}: {err.strerror}") from None
        raise CommandError(explain(err)) from None
    records = {"files": "file", "skipped": "skipped", "undecided": "undecided"}
    if not print_json(found.to_dict(), args, "who", records):
        _print_who(found)
    return searched(found, args, pids is not None)


def _print_who(found: Who) -> None:
    for f in found.files:
        kind = f.descriptions[0].type if f.descriptions else "not open"
        out(
            f"{escape(f.path)} ({kind}, device {f.device}, inode {f.inode}): "
            f"{_count(len(f.descriptions), 'description')}\n"
        )
        rows = [
            [
                d.mode,
                "?" if d.offset is None else str(d.offset),
                "\n".join(f"{m.pid},{escape(m.command)},{m.fd}" for m in d.members),
            ]
            for d in f.descriptions
        ]
        if rows:
            out(render_table(["MODE", "OFFSET", "HOLDERS"], rows))
    fds = {(m.pid, m.fd) for f in found.files for d in f.descriptions for m in d.members}
    out(
        f"{_count(len({p for p, _ in fds}), 'process')} with "
        f"{_count(len(fds), 'fd')} on {_count(len(found.files), 'path')}; "
        f"{_count(found.processes_read, 'process')} read, {len(found.skipped)} skipped\n"
    )
