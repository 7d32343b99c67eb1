"""What the ``kcmp-rs`` subcommands share: their errors (one line naming the process),
argument types, the options every answer takes (JSON, ``--allow-pidfd-getfd``), the
JSON writers, and the notes of an incomplete answer.

``cli`` holds the subcommands, ``_cli_queries`` the questions of issue-sized features
(holders, epoll, share), ``_cli_io`` the streams; this module is below both.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import kcmp_rs
from kcmp_rs._errors import KcmpUnavailableError
from kcmp_rs._proc import command_names, shown
from kcmp_rs._results import (
    EXITED,
    NO_SUCH_PROCESS,
    PERMISSION_DENIED,
    SCHEMA_VERSION,
    ZOMBIE,
    Skipped,
)
from kcmp_rs.cli._io import EXIT_INCOMPLETE, Parser, note, out, write_utf8
from kcmp_rs.cli._render import SKIPPED_NAMED, escape, json_lines, skipped_rows

__all__ = [
    "CommandError",
    "add_json_flags",
    "allow_pidfd_getfd_flag",
    "command",
    "denied",
    "dot_flag",
    "explain",
    "given_pids",
    "modes_and_targets",
    "name_skipped",
    "pid_arg",
    "pid_list",
    "pids_flag",
    "print_json",
    "report_undecided",
    "searched",
    "skipped_note",
    "unavailable_reason",
    "undecided_hint",
]

_PID_MAX = 2**31 - 1


class CommandError(Exception):
    """A subcommand could not do its job: ``main`` prints the message on stderr (after
    ``kcmp-rs: ``) and exits with status 1. Usage errors go through argparse (status 2)."""


def denied(pid: int | None) -> str:
    """Why ``pid`` may not be inspected: as another user, the rule; as root, what else
    can refuse root (naming the rule to root would be no help)."""
    if os.geteuid() != 0:
        why = "inspecting it needs the same user, or root / CAP_SYS_PTRACE"
    else:
        why = (
            "refused to root: CAP_SYS_PTRACE missing from this process (a container or "
            "setpriv drops it), a process in a user namespace this one does not own, or "
            "a security module (Yama ptrace_scope 3, SELinux, AppArmor)"
        )
    return f"permission denied for process {pid} ({why})"


def explain(err: OSError, pid: int | None = None) -> str:
    """A one-line cause for an error of the library, naming the process."""
    pid = getattr(err, "pid", None) or pid
    if isinstance(err, KcmpUnavailableError):
        text = f"kcmp(2) is unavailable here: {err.reason or err.strerror or err}"
        if err.undecided:
            text += f" ({len(err.undecided)} fds undecided; try --allow-pidfd-getfd)"
        return text
    if pid is None:
        return str(err)
    if isinstance(err, ProcessLookupError):
        # The library's own words say which kind: absent, a zombie, or exited meanwhile.
        said = _without_kernel_text(err)
        return said if said.startswith(f"process {pid} ") else f"process {pid} does not exist"
    if isinstance(err, PermissionError):
        return denied(pid)
    said = str(err.strerror or err)
    if re.search(rf"\bprocess {pid}\b", said):  # the library named it already
        return _without_kernel_text(err) or said
    return f"process {pid}: {said}"


def _without_kernel_text(err: OSError) -> str:
    """The library's message after the kernel's text (``No such process: ...``)."""
    said = err.strerror or ""
    kernel = os.strerror(err.errno) + ": " if err.errno else ""
    return said[len(kernel) :] if kernel and said.startswith(kernel) else said


# ---- skipped processes ----

_SKIPPED_NOTES = {
    NO_SUCH_PROCESS: "process {pid} does not exist",
    EXITED: "process {pid} exited while it was being read",
    ZOMBIE: "process {pid} has exited and awaits reaping (a zombie)",
}

#: Reasons after which the pid names no process of the answer: its name is not read (a
#: new process may have the pid by now).
_NAMELESS = {NO_SUCH_PROCESS, EXITED}


def skipped_note(pid: int, reason: str) -> str:
    """One stderr line: why process ``pid`` could not be read."""
    if reason == PERMISSION_DENIED:
        return denied(pid)
    return _SKIPPED_NOTES.get(reason, "process {pid}: " + reason).format(pid=pid)


def name_skipped(skipped: Sequence[tuple[int, str]], *, table: bool, explicit: bool) -> None:
    """Names the processes an answer left out, and why, at most ``SKIPPED_NAMED`` of
    them, then how many more (``-J`` lists every one). A table (``table``) names them
    on stdout after its summary, whether they were given or found; the processes given
    by ``-p`` (``explicit``) are also named on stderr, one note each, in every form."""
    pairs = [(int(pid), str(reason)) for pid, reason in skipped]
    if explicit:
        for pid, reason in pairs[:SKIPPED_NAMED]:
            note(skipped_note(pid, reason))
        if len(pairs) > SKIPPED_NAMED:
            note(f"... and {len(pairs) - SKIPPED_NAMED} more; -J lists every one")
    if table:
        named = [p for p, r in pairs[:SKIPPED_NAMED] if r not in _NAMELESS]
        out(skipped_rows(pairs, command_names(named) if named else {}))


class _Search(Protocol):
    """What every search answers besides its finds (``Holders``, ``Who``, ``Endpoints``)."""

    @property
    def skipped(self) -> tuple[Skipped, ...]: ...
    @property
    def processes_read(self) -> int: ...
    @property
    def undecided(self) -> tuple[tuple[int, int], ...]: ...


def searched(found: _Search, args: argparse.Namespace, explicit: bool) -> int:
    """A search's notes and exit status: the processes it could not read named
    (``name_skipped``), status 1 when it read none (no answer is not "nobody"), 4
    with fds undecided."""
    table = not (args.json or args.json_lines or getattr(args, "dot", False))
    name_skipped([(s.pid, s.reason) for s in found.skipped], table=table, explicit=explicit)
    if found.processes_read == 0:
        raise CommandError("no process could be read")
    if found.undecided:
        report_undecided(found.undecided, args.allow_pidfd_getfd)
        return EXIT_INCOMPLETE
    return 0


# ---- arguments ----


def pid_arg(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) <= _PID_MAX:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)


def pid_list(text: str) -> list[int]:
    return [pid_arg(part) for part in text.split(",")]


def pids_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``-p PID[,PID...]`` (repeatable): the processes a subcommand reads."""
    parser.add_argument(
        "-p",
        "--pid",
        dest="pids",
        type=pid_list,
        action="append",
        metavar="PID[,PID...]",
        help=help,
    )


def given_pids(args: argparse.Namespace) -> list[int] | None:
    """The pids of every ``-p``, in order; None when none was given."""
    return None if args.pids is None else [p for chunk in args.pids for p in chunk]


def allow_pidfd_getfd_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pidfd-getfd",
        action="store_true",
        help="where kcmp is blocked, let pidfd_getfd(2) copy fds to compare them",
    )


def command(
    sub: argparse._SubParsersAction[Parser],
    name: str,
    *,
    help: str,
    description: str,
    example: str,
) -> Parser:
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 79),
        epilog=f"example:\n{example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def modes_and_targets(refs: Sequence[tuple[int, int]]) -> list[tuple[str, str]]:
    """The access mode and escaped target of each ref, read in one native call."""
    return [(mode, escape(target)) for target, mode, _ in shown(refs)]


def undecided_hint(allow_pidfd_getfd: bool) -> str:
    if not allow_pidfd_getfd:
        return (
            "without kcmp(2), another process's fds can be compared only by copying them: "
            "try --allow-pidfd-getfd"
        )
    return (
        "no exact fallback decided them (pidfd_getfd(2) needs ptrace attach permission; "
        "O_PATH fds, files on network filesystems or under a lock need F_DUPFD_QUERY, "
        "Linux 6.10+)"
    )


def unavailable_reason() -> str:
    return kcmp_rs.support().reason or "kcmp(2) is unavailable here"


def report_undecided(refs: Sequence[tuple[int, int]], allow_pidfd_getfd: bool) -> None:
    """One stderr line: how many fds stayed undecided (the answer is incomplete), why,
    and what could decide them."""
    note(
        f"incomplete answer: {len(refs)} fds undecided: {unavailable_reason()}; "
        f"{undecided_hint(allow_pidfd_getfd)}"
    )


# ---- JSON ----


def add_json_flags(parser: argparse.ArgumentParser, lines_help: str, *, dot: bool = False) -> None:
    """``-J`` (one document) and ``-j`` (JSON Lines), and with ``dot`` also ``--dot``
    (Graphviz), mutually exclusive. ``args.dot`` is False where there is no ``--dot``."""
    form = parser.add_mutually_exclusive_group()
    form.add_argument("-J", "--json", action="store_true", help="one JSON document")
    form.add_argument("-j", "--json-lines", action="store_true", help=lines_help)
    if dot:
        dot_flag(form)
    else:
        parser.set_defaults(dot=False)


def dot_flag(parser: argparse._ActionsContainer) -> None:
    """``--dot``: the sharing graph in Graphviz's DOT language (``_render``)."""
    parser.add_argument(
        "--dot",
        action="store_true",
        help="the sharing graph in Graphviz DOT: processes, the descriptions they share, "
        "fds on the edges (render it: | dot -Tsvg > graph.svg)",
    )


def print_json(
    doc: Mapping[str, Any], args: argparse.Namespace, command_name: str, records: Mapping[str, str]
) -> bool:
    """Prints ``doc`` as ``-J`` or ``-j`` asked; False when neither was (a table is due)."""
    if args.json:
        # Compact: CPython's fast C encoder only serves indent=None, and a host-wide
        # document is large (pipe it through `python -m json.tool` to read it).
        write_utf8(json.dumps(doc, ensure_ascii=False) + "\n")
        return True
    if args.json_lines:
        write_utf8(json_lines(doc, command_name, records))
        return True
    return False


assert SCHEMA_VERSION >= 2  # the JSON Lines records above need version 2
