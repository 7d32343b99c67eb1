"""The ``kcmp-rs`` command: which processes share which kernel resources.

Subcommands: ``demo`` (the kcmp(2) manual page's example), ``fds PID`` (one process's
fds grouped by open file description), ``share PID1 PID2`` (what two processes share),
``scan`` (the descriptions many processes share, like lsfd; ``--example`` on a family
of processes it builds). Exit status: 0 ok, 1 nothing could be read or an operational
error (the cause on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import kcmp_rs
from kcmp_rs._proc import read_mode, read_target
from kcmp_rs._results import EXITED, NO_SUCH_PROCESS, PERMISSION_DENIED, Scan
from kcmp_rs._scan import classify_refs
from kcmp_rs._table import escape, format_table, render_table
from kcmp_rs._types import KcmpType, KcmpUnavailableError, Order

if TYPE_CHECKING:
    from kcmp_rs._example import Family

__all__ = ["build_parser", "main"]

PROG = "kcmp-rs"
_PID_MAX = 2**31 - 1


class CommandError(Exception):
    """A subcommand could not do its job: ``main`` prints the message on stderr (after
    ``kcmp-rs: ``) and exits with status 1. Usage errors go through argparse (status 2)."""


# ---- output ----


def _out(text: str) -> None:
    sys.stdout.write(text)


def _err(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")


def _write_utf8(text: str) -> None:
    """Writes ``text`` to stdout as UTF-8 whatever the locale (JSON output)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
    else:
        buffer.write(text.encode("utf-8", "replace"))
        buffer.flush()


def _denied(pid: int | None) -> str:
    return (
        f"permission denied for process {pid} "
        "(inspecting it needs the same user, or root / CAP_SYS_PTRACE)"
    )


def _explain(err: OSError, pid: int | None = None) -> str:
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
        # The library's message says how it is gone: absent, a zombie, exited meanwhile.
        return (err.strerror or "").partition(": ")[2] or f"process {pid} does not exist"
    if isinstance(err, PermissionError):
        return _denied(pid)
    return f"process {pid}: {err.strerror or err}"


# ---- arguments ----


def _pid(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) <= _PID_MAX:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)


def _pid_list(text: str) -> list[int]:
    return [_pid(part) for part in text.split(",")]


def _allow_pidfd_getfd(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pidfd-getfd",
        action="store_true",
        help="where kcmp is blocked, let pidfd_getfd(2) copy fds to compare them",
    )


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 79),
        epilog=f"example:\n{example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``kcmp-rs``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Which processes share which kernel resources, from kcmp(2).",
        epilog="examples:\n  kcmp-rs demo\n  kcmp-rs fds 1234\n  kcmp-rs share 1234 1240\n"
        "  kcmp-rs scan -p 1234,1240\n  kcmp-rs scan --example",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {kcmp_rs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = _command(
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

    fds = _command(
        sub,
        "fds",
        help="one process's fds grouped by open file description",
        description="List the fds of PID grouped by open file description: fds in one row "
        "share one description (dup(), or inherited and passed back). MODE is the "
        "access mode (r, w, rw, path for O_PATH), TARGET what /proc/PID/fd/N points to.",
        example="  kcmp-rs fds 1234\n  kcmp-rs fds $$",
    )
    fds.add_argument("pid", type=_pid, metavar="PID")
    _allow_pidfd_getfd(fds)
    fds.set_defaults(func=_cmd_fds, parser=fds)

    share = _command(
        sub,
        "share",
        help="what two processes share",
        description="Show which of the six task resources (VM, FILES, FS, SIGHAND, IO, "
        "SYSVSEM) two processes share, and the open file descriptions they both hold.",
        example="  kcmp-rs share 1234 1240",
    )
    share.add_argument("pid1", type=_pid, metavar="PID1")
    share.add_argument("pid2", type=_pid, metavar="PID2")
    _allow_pidfd_getfd(share)
    share.set_defaults(func=_cmd_share, parser=share)

    scan = _command(
        sub,
        "scan",
        help="the open file descriptions processes share (like lsfd)",
        description="Find the open file descriptions held by more than one fd, across the "
        "given processes (all processes by default). One row per description: TYPE, "
        "MODE, SHARED (its fds as PID,COMMAND,FD, one per line) and TARGET, then a "
        "summary. Names are shown escaped (\\n, \\x1b, \\xNN for bytes that are not "
        "UTF-8); JSON keeps them whole (schema: python -m pydoc kcmp_rs.scan).",
        example="  kcmp-rs scan -p 1234,1240\n  kcmp-rs scan --all -J > fds.json\n"
        "  kcmp-rs scan --example",
    )
    scan.add_argument(
        "-p",
        "--pid",
        dest="pids",
        type=_pid_list,
        action="append",
        metavar="PID[,PID...]",
        help="scan only these processes (repeatable)",
    )
    scan.add_argument(
        "--all",
        dest="include_unshared",
        action="store_true",
        help="list every open file description, not only the shared ones",
    )
    form = scan.add_mutually_exclusive_group()
    form.add_argument("-J", "--json", action="store_true", help="one JSON document")
    form.add_argument(
        "-j", "--json-lines", action="store_true", help="JSON Lines: one description per line"
    )
    _allow_pidfd_getfd(scan)
    scan.add_argument(
        "--example",
        action="store_true",
        help="fork a small family of processes with known sharing, scan exactly them, "
        "then clean up",
    )
    scan.set_defaults(func=_cmd_scan, parser=scan)
    return parser


# ---- demo ----


def _test_kcmp(message: str, pid1: int, pid2: int, fd_a: int, fd_b: int) -> None:
    verdict = kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd_a, fd_b)
    same = "same" if verdict == Order.EQUAL else "different"
    print(f"\t{message}")
    print(f"\t\tkcmp({pid1}, {pid2}, KCMP_FILE, {fd_a}, {fd_b}) ==> {same}")


def _demo_child(path: str, fd1: int) -> NoReturn:
    code = 1
    try:
        me = os.getpid()
        print(f"PID of child of fork() is {me}")
        _test_kcmp("Compare duplicate FDs from different processes:", me, os.getppid(), fd1, fd1)
        fd2 = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        print(f"Child opened file on FD {fd2}")
        _test_kcmp("Compare FDs from distinct open()s in same process:", me, me, fd1, fd2)
        fd3 = os.dup(fd1)
        print(f"Child duplicated FD {fd1} to create FD {fd3}")
        _test_kcmp("Compare duplicated FDs in same process:", me, me, fd1, fd3)
        code = 0
    except OSError as err:
        _err(f"demo: {_explain(err)}")
    except BaseException as err:  # the child must reach os._exit whatever happens
        _err(f"demo: {type(err).__name__}: {err}")
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                code = 1
        os._exit(code)


def _cmd_demo(args: argparse.Namespace) -> int:
    directory = tempfile.mkdtemp(prefix="kcmp-rs-demo-")
    fd1 = -1
    try:
        path = os.path.join(directory, "kcmp.test")
        fd1 = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        print(f"Parent PID is {os.getpid()}")
        print(f"Parent opened file on FD {fd1}\n")
        sys.stdout.flush()  # else the child would print the parent's buffer again
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _demo_child(path, fd1)
        _, status = os.waitpid(pid, 0)
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


# ---- fds, share ----


def _mode_and_target(pid: int, fd: int) -> tuple[str, str]:
    target = read_target(pid, fd)
    return read_mode(pid, fd), escape(target if target is not None else "?")


def _cmd_fds(args: argparse.Namespace) -> int:
    pid: int = args.pid
    try:
        groups = kcmp_rs.classify_fds(pid, missing="skip", allow_pidfd_getfd=args.allow_pidfd_getfd)
    except OSError as err:
        raise CommandError(_explain(err, pid)) from None
    rows = [[",".join(map(str, fds)), *_mode_and_target(pid, fds[0])] for fds in groups]
    _out(render_table(["FDS", "MODE", "TARGET"], rows))
    return 0


_RESOURCES = (
    ("VM", "vm", ""),
    ("FILES", "files", ""),
    ("FS", "fs", ""),
    ("SIGHAND", "sighand", ""),
    ("IO", "io", "also yes when neither process has an I/O context"),
    ("SYSVSEM", "sysvsem", "also yes when neither process has a SysV semaphore undo list"),
)


def _cmd_share(args: argparse.Namespace) -> int:
    pid1: int = args.pid1
    pid2: int = args.pid2
    refs: list[tuple[int, int]] = []
    try:
        shared = kcmp_rs.sharing(pid1, pid2)
        for pid in dict.fromkeys((pid1, pid2)):
            refs += [(pid, fd) for fd in kcmp_rs.open_fds(pid)]
    except OSError as err:
        raise CommandError(_explain(err, pid1)) from None
    rows = [
        [name, "yes" if getattr(shared, attr) else "no", note] for name, attr, note in _RESOURCES
    ]
    _out(render_table(["RESOURCE", "SHARED", "NOTE"], rows))

    groups, undecided = classify_refs(refs, allow_pidfd_getfd=args.allow_pidfd_getfd)
    both = []
    for group in groups:
        fds1 = [fd for pid, fd in group if pid == pid1]
        fds2 = [fd for pid, fd in group if pid == pid2]
        if fds1 and fds2:
            both.append((fds1, fds2))
    _out(f"\nOpen file descriptions shared by {pid1} and {pid2}: {len(both) or 'none'}\n")
    if both:
        rows = [
            [",".join(map(str, fds1)), ",".join(map(str, fds2)), *_mode_and_target(pid1, fds1[0])]
            for fds1, fds2 in both
        ]
        _out(render_table([f"FDS OF {pid1}", f"FDS OF {pid2}", "MODE", "TARGET"], rows))
    if undecided:
        reason = kcmp_rs.support().reason or "kcmp(2) is unavailable here"
        _err(f"{len(undecided)} fds could not be compared: {reason}")
    return 0


# ---- scan ----


class _Progress:
    """Progress on stderr, only on a terminal and only once the scan has run ~1 s."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.start < 1.0 or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        self.shown = True
        tail = ", classifying..." if done >= total else ""
        sys.stderr.write(f"\r{PROG}: read {done}/{total} processes{tail}\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _print_scan(result: Scan, args: argparse.Namespace) -> None:
    if args.json:
        # Compact: CPython's fast C encoder only serves indent=None, and a host-wide
        # scan's document is large (pipe it through `python -m json.tool` to read it).
        _write_utf8(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    elif args.json_lines:
        _write_utf8(
            "".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in result.descriptions)
        )
    else:
        _out(format_table(result))


def _report_problems(result: Scan, explicit: bool) -> None:
    if explicit:
        for s in result.skipped:
            if s.reason in (NO_SUCH_PROCESS, EXITED):
                _err(
                    f"process {s.pid} does not exist"
                    if s.reason == NO_SUCH_PROCESS
                    else f"process {s.pid} exited during the scan"
                )
            elif s.reason == PERMISSION_DENIED:
                _err(_denied(s.pid))
            else:
                _err(f"process {s.pid}: {s.reason}")
    if result.undecided:
        _err(
            f"{len(result.undecided)} fds could not be classified: kcmp(2) is unavailable "
            "here and no exact fallback decided them (try --allow-pidfd-getfd)"
        )


def _scan_example(args: argparse.Namespace) -> int:
    # Here, not at the top: only this subcommand forks a family, and every other run
    # of the command would pay for importing the builder.
    from kcmp_rs._example import build_family

    try:
        with build_family(n_procs=4, fds_per_proc=12) as family:
            _show_example(family, args)
    except RuntimeError as err:  # the family could not be built
        raise CommandError(f"scan --example: {err}") from None
    return 0


def _show_example(family: Family, args: argparse.Namespace) -> None:
    table = not (args.json or args.json_lines)
    if table:
        _out(
            f"Example: {len(family.pids)} processes ({', '.join(map(str, family.pids))}), "
            f"started by this one ({os.getpid()}). All inherit the read end of one pipe "
            "through fork(); each pair inherits one file, passes another over a Unix socket "
            "(SCM_RIGHTS), and holds the two ends of a pipe, one each (never shared); fds "
            "0-2 and some others are dup()s within a process.\n\n"
        )
    result = kcmp_rs.scan(
        family.pids,
        include_unshared=args.include_unshared,
        allow_pidfd_getfd=args.allow_pidfd_getfd,
    )
    _print_scan(result, args)
    found = [tuple((m.pid, m.fd) for m in d.members) for d in result.shared]
    if found != family.groups or result.skipped:
        raise CommandError("scan --example: the scan does not match how the family was built")
    if table:
        _out(f"\nAll {len(found)} shared descriptions found, as built.\n")


def _cmd_scan(args: argparse.Namespace) -> int:
    if args.example:
        if args.pids:
            args.parser.error("--example scans its own processes: it takes no -p")
        return _scan_example(args)
    explicit = args.pids is not None
    pids = [p for chunk in args.pids for p in chunk] if explicit else None
    progress = _Progress()
    try:
        result = kcmp_rs.scan(
            pids,
            include_unshared=args.include_unshared,
            allow_pidfd_getfd=args.allow_pidfd_getfd,
            progress=progress,
        )
    finally:
        progress.clear()
    _print_scan(result, args)
    _report_problems(result, explicit)
    if result.processes_read == 0:
        raise CommandError("no process could be read")
    return 0


# ---- main ----


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``kcmp-rs`` with ``argv`` (default: ``sys.argv[1:]``); the exit status.

    Returns 0 when the subcommand did its job, 1 when it could not (the cause is
    printed on stderr), 130 on Ctrl-C. A usage error exits through argparse's
    ``SystemExit(2)`` after printing the usage on stderr.
    """
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
    except CommandError as err:
        _err(str(err))
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except OSError as err:  # KcmpUnavailableError, or one no subcommand expected
        _err(_explain(err))
        return 1
    except KeyboardInterrupt:
        return 130
    return status
