"""The ``kcmp-rs`` command's parser and ``main``: which processes share which kernel resources.

Here: ``demo`` (the kcmp(2) manual page's example), ``fds PID`` (one process's fds
grouped by open file description, the scan of that one process) and ``scan`` (the
descriptions many processes share, like lsfd; ``--example`` on a family of processes
it builds). ``share``, ``holders``, ``epoll`` and ``who`` are in ``_queries``, ``escapes``
in ``_escapes``. Exit
statuses: ``main``'s docstring and ``kcmp-rs --help``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import kcmp_rs
from kcmp_rs._errors import KcmpType, Order
from kcmp_rs._results import Scan
from kcmp_rs._scan import scan_from_report, scan_report
from kcmp_rs.cli._audit import SCAN_RECORDS, add_audit_flags, prepare_audit, print_audit
from kcmp_rs.cli._common import (
    CommandError,
    add_json_flags,
    allow_pidfd_getfd_flag,
    command,
    explain,
    given_pids,
    name_skipped,
    pid_arg,
    pids_flag,
    print_json,
    report_undecided,
    skipped_note,
)
from kcmp_rs.cli._escapes import add_escapes
from kcmp_rs.cli._io import (
    EXIT_CROSSING,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_READER_GONE,
    HELP_EPILOG,
    PROG,
    OutputError,
    Parser,
    Progress,
    flush,
    note,
    out,
    silence_stdout,
    write_native,
)
from kcmp_rs.cli._metrics import add_metrics
from kcmp_rs.cli._queries import add_commands
from kcmp_rs.cli._render import (
    SKIPPED_NAMED,
    channels_table,
    escape,
    format_table,
    render_table,
    scan_dot,
)
from kcmp_rs.cli._watch import add_watch_flags, run_watch, watching

if TYPE_CHECKING:
    from kcmp_rs._example import Family

__all__ = ["build_parser", "console", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kcmp-rs``."""
    parser = Parser(
        prog=PROG,
        description="Which processes share which kernel resources, from kcmp(2).",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {kcmp_rs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = command(
        sub,
        "demo",
        help="run the kcmp(2) manual page's example",
        description="Reproduce the example of the kcmp(2) manual page: a file opened before "
        "fork() is the same open file description in parent and child; two open()s of "
        "one file are different descriptions; dup() gives the same one. Every verdict "
        "comes from a kcmp(2) call.",
        example="  kcmp-rs demo",
    )
    demo.set_defaults(func=_cmd_demo, parser=demo)

    fds = command(
        sub,
        "fds",
        help="one process's fds grouped by open file description",
        description="List the fds of PID grouped by open file description: fds in one row "
        "share one description (dup(), or inherited and passed back). MODE is the "
        "access mode (r, w, rw, path for O_PATH), TARGET what /proc/PID/fd/N points to.",
        example="  kcmp-rs fds 1234\n  kcmp-rs fds $$",
    )
    fds.add_argument("pid", type=pid_arg, metavar="PID")
    add_json_flags(fds, "JSON Lines: one record per line (header, description, ...)")
    allow_pidfd_getfd_flag(fds)
    fds.set_defaults(func=_cmd_fds, parser=fds)

    add_commands(sub)
    add_escapes(sub)
    add_metrics(sub)

    scan = command(
        sub,
        "scan",
        help="the open file descriptions processes share (like lsfd)",
        description="Find the open file descriptions held by more than one fd, across the "
        "given processes (all processes by default). One row per description: TYPE, "
        "MODE, SHARED (its fds as PID,COMMAND,FD, one per line) and TARGET, then a "
        "summary and the processes it could not read (PID, COMMAND, REASON; the first "
        f"{SKIPPED_NAMED}, -J lists every one). Names are shown escaped (\\n, \\x1b, \\xNN "
        "for bytes that are not UTF-8); JSON keeps them whole (schema: python -m pydoc "
        "kcmp_rs.scan).",
        example="  kcmp-rs scan -p 1234,1240\n  kcmp-rs scan --all -J > fds.json\n"
        "  kcmp-rs scan --example\n  kcmp-rs scan --example --dot | dot -Tsvg > example.svg",
    )
    pids_flag(scan, "scan only these processes (repeatable)")
    scan.add_argument(
        "--all",
        dest="include_unshared",
        action="store_true",
        help="list every open file description, not only the shared ones",
    )
    add_json_flags(
        scan,
        "JSON Lines: a header, one record per description, skipped process and "
        "undecided fd, then a summary",
        dot=True,
    )
    allow_pidfd_getfd_flag(scan)
    scan.add_argument(
        "--ipc",
        action="store_true",
        help="also the channels between processes: pipes, FIFOs, Unix socket pairs and "
        "ptys whose ends two processes or more hold (with --dot: who talks to whom)",
    )
    scan.add_argument(
        "--example",
        action="store_true",
        help="fork a small family of processes with known sharing, scan exactly them, "
        "then clean up",
    )
    add_audit_flags(scan)
    add_watch_flags(scan)
    scan.set_defaults(func=_cmd_scan, parser=scan)
    return parser


# ---- demo ----


def _test_kcmp(lines: list[str], message: str, pid1: int, pid2: int, fd_a: int, fd_b: int) -> None:
    same = kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd_a, fd_b) == Order.EQUAL
    lines += [
        f"\t{message}",
        f"\t\tkcmp({pid1}, {pid2}, KCMP_FILE, {fd_a}, {fd_b}) ==> "
        + ("same" if same else "different"),
    ]


def _demo_steps(path: str, fd1: int, lines: list[str]) -> None:
    me = os.getpid()
    lines.append(f"PID of child of fork() is {me}")
    _test_kcmp(lines, "Compare duplicate FDs from different processes:", me, os.getppid(), fd1, fd1)
    fd2 = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    lines.append(f"Child opened file on FD {fd2}")
    _test_kcmp(lines, "Compare FDs from distinct open()s in same process:", me, me, fd1, fd2)
    fd3 = os.dup(fd1)
    lines.append(f"Child duplicated FD {fd1} to create FD {fd3}")
    _test_kcmp(lines, "Compare duplicated FDs in same process:", me, me, fd1, fd3)


def _demo_child(path: str, fd1: int, report: int) -> NoReturn:
    """The forked half of the demo. Its lines go to the parent through ``report``, not
    to stdout: only the parent writes stdout, so a reader gone away or a stdout that
    fails is met once, by the process that reports it."""
    code = 1
    lines: list[str] = []
    try:
        _demo_steps(path, fd1, lines)
        code = 0
    except OSError as err:
        note(f"demo: {explain(err)}")
    except BaseException as err:  # the child must reach os._exit whatever happens
        note(f"demo: {type(err).__name__}: {err}")
    finally:
        try:
            data = "".join(line + "\n" for line in lines).encode()
            while data:
                data = data[os.write(report, data) :]
        except BaseException:  # the parent is gone (Ctrl-C): nobody to tell
            code = 1
        os._exit(code)


def _read_to_end(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _run_demo_child(path: str, fd1: int) -> tuple[int, int, str]:
    """Forks the demo's child: ``(pid, wait status, what it printed)``, reaped."""
    report_r, report_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(report_r)
            _demo_child(path, fd1, report_w)
        os.close(report_w)
        report_w = -1
        try:
            text = _read_to_end(report_r)
        finally:
            _, status = os.waitpid(pid, 0)
    finally:
        os.close(report_r)
        if report_w >= 0:
            os.close(report_w)
    return pid, status, text


def _cmd_demo(args: argparse.Namespace) -> int:
    support = kcmp_rs.support()
    if not support.kcmp:
        # Every step of the manual page's example is a kcmp call: one line, no child.
        raise CommandError(f"demo: kcmp(2) is unavailable here: {support.reason}")
    directory = tempfile.mkdtemp(prefix="kcmp-rs-demo-")
    fd1 = -1
    try:
        path = os.path.join(directory, "kcmp.test")
        fd1 = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        out(f"Parent PID is {os.getpid()}\nParent opened file on FD {fd1}\n\n")
        flush()  # a reader gone already is found before any child is forked
        pid, status, text = _run_demo_child(path, fd1)
        out(text)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return 0
        how = (
            f"exited with {os.WEXITSTATUS(status)}"
            if os.WIFEXITED(status)
            else f"was killed by signal {os.WTERMSIG(status)}"
        )
        raise CommandError(f"demo: the child process {pid} {how}")
    finally:
        if fd1 >= 0:
            os.close(fd1)
        shutil.rmtree(directory, ignore_errors=True)


# ---- fds ----


def _cmd_fds(args: argparse.Namespace) -> int:
    """One process's scan, every description included: one native pass, the process
    pinned throughout; JSON is that scan's document, written by the core."""
    pid: int = args.pid
    report = scan_report([pid], include_unshared=True, allow_pidfd_getfd=args.allow_pidfd_getfd)
    for gone, reason in report.skipped:  # the one process: no answer without it
        raise CommandError(skipped_note(gone, reason))
    if not (
        (args.json or args.json_lines)
        and write_native(lambda fd: report.write_json(fd, args.json_lines, fds=True))
    ):
        result = scan_from_report(report)
        if not print_json(result.to_dict(), args, "fds", SCAN_RECORDS):
            rows = [
                [",".join(str(m.fd) for m in d.members), d.mode, escape(d.target)]
                for d in result.descriptions
            ]
            out(render_table(["FDS", "MODE", "TARGET"], rows))
    undecided = tuple(report.undecided)
    if undecided:
        report_undecided(undecided, args.allow_pidfd_getfd)
        return EXIT_INCOMPLETE
    return 0


# ---- scan ----


def _print_scan(result: Scan, args: argparse.Namespace) -> bool:
    if args.dot:
        out(scan_dot(result))
    elif not print_json(result.to_dict(), args, "scan", SCAN_RECORDS):
        out(format_table(result))
        if result.channels is not None:
            out(f"\nChannels between processes: {len(result.channels) or 'none'}\n")
            if result.channels:
                out(channels_table(result))
    return False  # no boundary audit, no crossing


def _scan_example(args: argparse.Namespace) -> int:
    # Here, not at the top: only this subcommand forks a family, and every other run
    # of the command would pay for importing the builder.
    from kcmp_rs._example import build_family

    try:
        with build_family(n_procs=4, fds_per_proc=12) as family:
            return _show_example(family, args)
    except RuntimeError as err:  # the family could not be built
        raise CommandError(f"scan --example: {err}") from None


def _show_example(family: Family, args: argparse.Namespace) -> int:
    table = not (args.json or args.json_lines or args.dot)
    if table:
        about = textwrap.fill(
            "All inherit the read end of one pipe through fork(); each pair inherits one "
            "file, passes another over a Unix socket (SCM_RIGHTS), and holds the two ends "
            "of a pipe, one each (never shared); fds 0-2 and some others are dup()s "
            "within a process.",
            width=88,
        )
        out(
            f"Example: {len(family.pids)} processes ({', '.join(map(str, family.pids))}), "
            f"started by this one ({os.getpid()}).\n{about}\n\n"
        )
    result = kcmp_rs.scan(
        family.pids,
        include_unshared=args.include_unshared,
        allow_pidfd_getfd=args.allow_pidfd_getfd,
        ipc=args.ipc,
    )
    _print_scan(result, args)
    unread = _channel_notes(result.channel_notes)
    if result.undecided:  # kcmp blocked: what was decided cannot be checked whole
        report_undecided(result.undecided, args.allow_pidfd_getfd)
        return EXIT_INCOMPLETE
    found = [tuple((m.pid, m.fd) for m in d.members) for d in result.shared]
    if found != family.groups or result.skipped:
        raise CommandError("scan --example: the scan does not match how the family was built")
    if table:
        out(f"\nAll {len(found)} shared descriptions found, as built.\n")
    return EXIT_INCOMPLETE if unread else 0


def _channel_notes(notes: Sequence[str]) -> bool:
    """Says on stderr what the channel search could not read; whether it said any."""
    for text in notes:
        note(f"incomplete channels: {text}")
    return bool(notes)


def _cmd_scan(args: argparse.Namespace) -> int:
    if watching(args):
        return run_watch(args)
    prepare_audit(args)
    if args.ipc and args.across:
        args.parser.error("--ipc lists channels of a whole scan: it takes no --across")
    if args.example:
        if args.pids:
            args.parser.error("--example scans its own processes: it takes no -p")
        return _scan_example(args)
    explicit = args.pids is not None
    pids = given_pids(args)
    progress = Progress()
    try:
        report = scan_report(
            pids,
            include_unshared=args.include_unshared,
            allow_pidfd_getfd=args.allow_pidfd_getfd,
            progress=progress,
            boundary=args.across,
            ipc=args.ipc,
        )
    finally:
        progress.clear()
    crossing = False
    # JSON is written by the core straight from the report (the audit's, of the
    # crossings it keeps); DOT and tables need the result types.
    plain_json = (args.json or args.json_lines) and not args.across and not args.dot
    if not (plain_json and write_native(lambda fd: report.write_json(fd, args.json_lines))):
        result = scan_from_report(report)
        crossing = print_audit(result, args, report) if args.across else _print_scan(result, args)
    table = not (args.json or args.json_lines or args.dot)
    name_skipped(report.skipped, table=table, explicit=explicit)
    if report.processes_read == 0:
        raise CommandError("no process could be read")
    undecided = tuple(report.undecided)
    if undecided:
        report_undecided(undecided, args.allow_pidfd_getfd)
    if crossing:
        return EXIT_CROSSING
    incomplete = _channel_notes(report.channel_notes()) or undecided
    return EXIT_INCOMPLETE if incomplete else 0


# ---- main ----


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``kcmp-rs`` with ``argv`` (default: ``sys.argv[1:]``); the exit status.

    Returns 0 when the subcommand did its job, 1 when it could not or stdout cannot be
    written (the cause is printed on stderr, one line), 3 when ``scan --across``
    found a crossing no ``--allow`` rule expects or ``escapes`` a high or medium finding
    (over 4), 4 when the answer is incomplete (kcmp blocked, some fds or resources
    undecided; ``escapes``: nothing found but something unread: said on stderr), 141
    when the reader of stdout went away (nothing printed), 130 on Ctrl-C. ``--help``
    and ``--version`` exit through ``SystemExit(0)``, a usage error through
    ``SystemExit(2)`` after printing the usage on stderr.
    """
    if sys.stdout is None:  # fd 1 was not open when Python started (`kcmp-rs ... >&-`)
        note("standard output is closed")
        return EXIT_FAILED
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C while the parser is built or the output written
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, like any tool killed by SIGPIPE.
        silence_stdout()
        return EXIT_READER_GONE
    except OutputError as err:
        note(str(err))
        silence_stdout()
        return EXIT_FAILED


def console(*, sigint_default: bool = False) -> int:
    """``kcmp-rs`` as a command (the console script, ``python -m kcmp_rs``): ``main()``
    with Ctrl-C ending it quietly at any moment, status 130 or death by SIGINT.

    ``sigint_default``: the caller (``_kcmp_rs_cli``) set SIGINT to its default action
    while this module was imported. Python's ``KeyboardInterrupt`` handler is put back
    here, inside the ``try`` that catches it (so ``main`` cleans up on Ctrl-C: the
    demo's files, the example's processes), and SIGINT set to its default action again
    before returning: a Ctrl-C after the answer ends the process, never in a traceback
    of the interpreter's exit. The library never calls this."""
    if not sigint_default:
        return main()
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        status = main()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    except KeyboardInterrupt:  # after main returned, before SIGINT was reset
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        status = EXIT_INTERRUPTED
    return status


def _run(argv: Sequence[str] | None) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said with the usage of the subcommand they were given to
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit:
        flush()  # --help and --version: their text may meet a reader gone away too
        raise
    try:
        status: int = args.func(args)
        flush()
    except CommandError as err:
        note(str(err))
        return EXIT_FAILED
    except (BrokenPipeError, OutputError):
        raise
    except OSError as err:  # KcmpUnavailableError, or one no subcommand expected
        note(explain(err))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return status
