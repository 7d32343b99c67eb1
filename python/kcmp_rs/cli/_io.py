"""The ``kcmp-rs`` command's streams and exit statuses: writing stdout so that a reader
gone away (``| head``) ends the command quietly and any other write failure is one
line on stderr, never a traceback; stderr notes; the scan's progress line.

``cli`` holds what the subcommands do, this what they write to and how they end.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from kcmp_rs._config import DISABLE_VALUES, KEEP_VALUES, NO_KCMP

__all__ = [
    "EXIT_CROSSING",
    "EXIT_FAILED",
    "EXIT_FOUND",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_READER_GONE",
    "HELP_EPILOG",
    "PROG",
    "OutputError",
    "Parser",
    "Progress",
    "flush",
    "note",
    "out",
    "silence_stdout",
    "write_native",
    "write_utf8",
]

PROG = "kcmp-rs"

EXIT_FAILED = 1
#: ``scan --across``: a description crosses the boundary and no ``--allow`` rule
#: expects it. It wins over 4: a crossing found is certain even where kcmp is blocked.
EXIT_CROSSING = 3
#: ``escapes``: a high or medium finding. The same number as a crossing: an audit
#: found what it looks for; it wins over 4 likewise.
EXIT_FOUND = EXIT_CROSSING
#: kcmp(2) blocked and part of the answer undecided.
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: what the shell reports for any tool cut off by ``| head``, so a
#: ``set -o pipefail`` script can tell a cut-off output from a whole one.
EXIT_READER_GONE = 141

#: The end of ``kcmp-rs --help``: what every subcommand shares.
HELP_EPILOG = f"""\
examples:
  kcmp-rs demo
  kcmp-rs fds 1234
  kcmp-rs share 1234 1240
  kcmp-rs who /var/log/syslog
  kcmp-rs scan -p 1234,1240
  kcmp-rs scan --example
  kcmp-rs scan --across net --allow command=containerd-shim*
  kcmp-rs escapes

exit status:
  0    the answer is complete (scan --across: no unexpected crossing;
       escapes: no high or medium finding)
  1    nothing could be read, or an error (one line on stderr)
  2    usage error
  3    scan --across: a description crosses the boundary and no --allow
       rule expects it (stdout lists the crossings; wins over 4);
       escapes: a high or medium finding (wins over 4)
  4    incomplete: kcmp(2) is blocked and some fds or resources stay
       undecided, or a socket's peer or a channel could not be read;
       escapes: nothing found but a process was skipped or a mount
       namespace not read (stdout has the rest; stderr says what and why)
  130  interrupted (Ctrl-C)
  141  the reader of stdout went away (| head): nothing on stderr

environment:
  {NO_KCMP}={DISABLE_VALUES[0]} (or {", ".join(DISABLE_VALUES[1:])}) never issue kcmp(2);
  unset, empty, {", ".join(v for v in KEEP_VALUES if v)} keep it; any case; other
  values warn and keep it"""


class OutputError(Exception):
    """Writing to stdout failed for a reason other than its reader going away (EBADF,
    ENOSPC, EIO): kept apart from the library's OSErrors, which name a process."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(f"cannot write to standard output: {cause.strerror or cause}")


@contextlib.contextmanager
def _writing() -> Iterator[IO[str]]:
    """stdout, with its failures sorted: BrokenPipeError as is, others as OutputError."""
    if sys.stdout is None:  # fd 1 was not open when Python started
        raise OutputError(OSError(errno.EBADF, os.strerror(errno.EBADF)))
    try:
        yield sys.stdout
    except BrokenPipeError:
        raise
    except OSError as cause:
        raise OutputError(cause) from None


def out(text: str) -> None:
    with _writing() as stdout:
        stdout.write(text)


def flush() -> None:
    with _writing() as stdout:
        stdout.flush()


def write_native(write: Callable[[int], None]) -> bool:
    """Lets native code write to stdout's fd (``write(fd)``), Python's buffers flushed
    first; False, with nothing written, when stdout has no fd (captured in a test)."""
    with _writing() as stdout:
        try:
            fd = stdout.fileno()
        except (OSError, ValueError):  # io.UnsupportedOperation is both
            return False
        stdout.flush()
        try:
            write(fd)
        except BrokenPipeError:
            raise
        except OSError as err:  # as any other write to stdout says it
            raise OSError(err.errno, os.strerror(err.errno or errno.EIO)) from None
        return True


def write_utf8(text: str) -> None:
    """Writes ``text`` to stdout as UTF-8 whatever the locale (JSON output)."""
    with _writing() as stdout:
        stdout.flush()
        buffer = getattr(stdout, "buffer", None)
        if buffer is None:
            stdout.write(text)
        else:
            buffer.write(text.encode("utf-8", "replace"))
            buffer.flush()


def _write_stderr(text: str) -> None:
    # Nowhere is left to report a failure to report: stderr closed or its reader gone.
    with contextlib.suppress(OSError):
        if sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()


def note(message: str) -> None:
    """``kcmp-rs: MESSAGE`` on stderr, flushed (a forked child inherits no pending text)."""
    _write_stderr(f"{PROG}: {message}\n")


def silence_stdout() -> None:
    """Points stdout's fd at /dev/null, so that the interpreter's own flush at exit
    cannot fail again and print "Exception ignored ..." once the command chose quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # None, closed, or not a real file
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Parser(argparse.ArgumentParser):
    """argparse writing --help and --version through ``out``, so that their text meets
    a reader gone away or a failing stdout as every subcommand's output does (argparse
    itself ignores write errors on some Python versions and not on others)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message:
            return
        if file is not None and file is sys.stdout:
            out(message)
        else:
            _write_stderr(message)


class Progress:
    """Progress on stderr, only on a terminal and only once the scan has run ~1 s."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False
        self.tty = sys.stderr is not None and sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.start < 1.0 or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        self.shown = True
        tail = ", classifying..." if done >= total else ""
        _write_stderr(f"\r{PROG}: read {done}/{total} processes{tail}\x1b[K")

    def clear(self) -> None:
        if self.shown:
            _write_stderr("\r\x1b[K")
