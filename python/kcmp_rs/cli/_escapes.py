"""``kcmp-rs escapes``: the escape audit (``kcmp_rs.escapes()``). Which fds, working
directories and roots of the processes read lie on a mount outside their own mount
namespace (runc's leaked fd of the host's /sys/fs/cgroup, CVE-2024-21626), on a
lazily unmounted mount, or outside their chroot; host devices as info.

Exit statuses: 3 when a high or medium finding is made (it wins over 4: a finding is
certain however much else went unread), 4 when nothing is found but the audit is
incomplete (a process skipped, or a note: nothing found is then no proof), 1 when no
process could be read, 0 otherwise (info findings alone included).
"""

from __future__ import annotations

import argparse
import textwrap

from kcmp_rs._escapes import Escape, Escapes, escapes
from kcmp_rs.cli._common import (
    CommandError,
    add_json_flags,
    command,
    explain,
    given_pids,
    name_skipped,
    pids_flag,
    print_json,
)
from kcmp_rs.cli._io import EXIT_FOUND, EXIT_INCOMPLETE, Parser, note, out
from kcmp_rs.cli._render import count, escape, render_table

__all__ = ["ESCAPE_RECORDS", "add_escapes", "escapes_summary", "escapes_table"]

#: The list fields of ``Escapes.to_dict()`` and their JSON Lines record kinds.
ESCAPE_RECORDS = {"findings": "finding", "skipped": "skipped"}

#: Characters of a command name a row shows (comm is at most 15; a cmdline may be long).
_COMMAND_WIDTH = 32
#: Characters of a container id a row shows, as ``podman ps`` and ``docker ps`` do.
_ID_WIDTH = 12


def add_escapes(sub: argparse._SubParsersAction[Parser]) -> None:
    """Registers ``escapes``."""
    parser = command(
        sub,
        "escapes",
        help="fds, cwds and roots that escape their mount namespace (leaked host files)",
        description="The escape audit: every fd, working directory and root of the "
        "processes read whose mount is not a mount of the process's own mount namespace "
        "(a container holding a file of the host, as runc leaked /sys/fs/cgroup in "
        "CVE-2024-21626), lies on a lazily unmounted mount (detached) or outside the "
        "process's root (outside-root). SEVERITY: high for a directory or a file open for "
        "writing, medium for other files, info for a character device from outside (the "
        "host's /dev/null that podman exec gives as stdin). CONTAINER comes from the "
        "cgroup path. Exit 3 if a high or medium finding is made, 4 if none is but the "
        "audit is incomplete (a process not read, or a note on stderr says what was not "
        "decided). All processes by default; -p narrows the audit.",
        example="  kcmp-rs escapes\n  kcmp-rs escapes -p 1234,1240 -J",
    )
    pids_flag(parser, "audit only these processes (repeatable)")
    add_json_flags(parser, "JSON Lines: one record per line (header, finding, skipped, ...)")
    parser.set_defaults(func=_cmd_escapes, parser=parser)


def _cmd_escapes(args: argparse.Namespace) -> int:
    pids = given_pids(args)
    try:
        found = escapes(pids)
    except OSError as err:
        raise CommandError(explain(err)) from None
    table = not (args.json or args.json_lines)
    if not print_json(found.to_dict(), args, "escapes", ESCAPE_RECORDS):
        out(escapes_table(found) + escapes_summary(found) + "\n")
    name_skipped([(s.pid, s.reason) for s in found.skipped], table=table, explicit=pids is not None)
    if found.processes_read == 0:
        raise CommandError("no process could be read")
    for text in found.notes:
        note(f"incomplete: {text}")
    if found.found:
        return EXIT_FOUND
    if not found.complete:
        note(f"incomplete audit: no escape found, {_unread(found)}")
        return EXIT_INCOMPLETE
    return 0


def _unread(found: Escapes) -> str:
    """What the audit could not read: the skipped processes, the notes."""
    parts = [count(len(found.skipped), "process skipped", "processes skipped")]
    if found.notes:
        parts.append(count(len(found.notes), "note", "notes"))
    return " and ".join(parts)


def _container(e: Escape) -> str:
    if e.container is None:
        return "-"
    return f"{e.container.runtime}:{e.container.id[:_ID_WIDTH]}"


def _command(text: str) -> str:
    shown = escape(text)
    return shown if len(shown) <= _COMMAND_WIDTH else shown[: _COMMAND_WIDTH - 3] + "..."


def escapes_table(found: Escapes) -> str:
    """One row per finding ("" for none): PID, COMMAND, WHERE (an fd number, cwd or
    root), KIND, SEVERITY, MNT (the mount id), FS, CONTAINER (runtime and short id)
    and PATH last, as the auditor sees it; names escaped as every table escapes them."""
    rows = [
        [
            str(e.pid),
            _command(e.command),
            str(e.where),
            e.kind,
            e.severity,
            str(e.mnt_id),
            escape(e.fs_type or "?"),
            _container(e),
            escape(e.path),
        ]
        for e in found.findings
    ]
    if not rows:
        return ""
    headers = ["PID", "COMMAND", "WHERE", "KIND", "SEVERITY", "MNT", "FS", "CONTAINER", "PATH"]
    return render_table(headers, rows)


def escapes_summary(found: Escapes) -> str:
    """One line (wrapped past 120 columns): the findings by severity, or "no escapes"
    only when the audit is complete; the processes and mount namespaces read, what was
    skipped and the notes."""
    counts = found.counts()
    if found.found:
        lead = (
            f"{count(found.found, 'escape', 'escapes')} "
            f"({counts['high']} high, {counts['medium']} medium)"
        )
    elif found.complete:
        lead = "no escapes"
    else:
        lead = "no escape found, but the audit is incomplete"
    if counts["info"]:
        lead += f", {counts['info']} info"
    if found.found and not found.complete:
        lead += "; the audit is incomplete"
    read = (
        f"{count(found.processes_read, 'process read', 'processes read')} in "
        f"{count(found.mount_namespaces_read, 'mount namespace', 'mount namespaces')}, "
        f"{len(found.skipped)} skipped"
    )
    if found.notes:
        read += f", {count(len(found.notes), 'note', 'notes')}"
    line = f"{lead}; {read}"
    return line if len(line) <= 120 else textwrap.fill(line, width=100)
