"""``kcmp-rs scan --watch SECONDS``: the scan repeated every SECONDS, written as JSON
Lines events for log pipelines: which open file descriptions appeared, vanished or
changed holders since the previous pass.

Each pass is one native scan (``scan_report``); this module only matches the
descriptions of two passes (``diff``) and writes the lines. The format and the
identity rule are documented in docs/cli.md ("Watching"); in short:

- first a ``header`` line; then per pass its ``event`` lines and a ``pass`` line, all
  written at once and flushed, so a consumer always sees whole passes;
- a description of a pass is the same as one of the previous pass when they share a
  member ``(pid, fd)`` and have the same type, mode and target. kcmp(2) cannot
  compare a description with one that is gone, and the scan gives no process start
  time, so an fd closed and reopened on the same target between two passes, or a pid
  reused by a process holding the same fd on the same target, cannot be told apart
  from the old one: it counts as the same.

Ctrl-C ends it with status 130, SIGTERM (a service manager stopping it) with 0. Either
signal arriving while a pass's lines are written is held until they are out, so the
output ends with a complete line; a second one during the same write (a reader that
stopped reading) acts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kcmp_rs._results import SCHEMA_VERSION, Description, Member, Scan
from kcmp_rs._scan import scan_from_report, scan_report
from kcmp_rs.cli._common import CommandError, given_pids, unavailable_reason, undecided_hint
from kcmp_rs.cli._io import EXIT_INCOMPLETE, note, write_utf8

__all__ = [
    "APPEARED",
    "HOLDERS",
    "MAX_INTERVAL",
    "VANISHED",
    "Event",
    "add_watch_flags",
    "diff",
    "event_record",
    "pass_record",
    "run_watch",
    "watching",
]

APPEARED = "appeared"
VANISHED = "vanished"
HOLDERS = "holders"

#: The longest interval taken (a day): longer waits belong to a timer unit, and
#: ``time.sleep`` refuses the very large ones with an OverflowError.
MAX_INTERVAL = 86400.0

#: The options of ``scan`` that make no sense repeated as events, and how they are
#: named in the usage error: the attribute, its flag.
_REFUSED = (
    ("json", "-J"),
    ("dot", "--dot"),
    ("ipc", "--ipc"),
    ("example", "--example"),
    ("across", "--across"),
    ("inside", "--inside"),
    ("allow", "--allow"),
)


# ---- arguments ----


#: A decimal number of seconds: what ``float`` takes besides (``nan``, ``inf``, ``1_0``,
#: spaces around) is refused, as ``pid_arg`` refuses ``1_000``.
_SECONDS = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _seconds_arg(text: str) -> float:
    value = float(text) if _SECONDS.fullmatch(text) else 0.0
    if not 0 < value <= MAX_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"not a number of seconds above 0 and at most {MAX_INTERVAL:g}: {text!r}"
        )
    return value


def _count_arg(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive number of passes: {text!r}")
    return int(text)


def add_watch_flags(parser: argparse.ArgumentParser) -> None:
    """``--watch SECONDS`` and ``--count N`` on the scan's parser."""
    parser.add_argument(
        "--watch",
        type=_seconds_arg,
        metavar="SECONDS",
        help="repeat the scan every SECONDS and write JSON Lines events: descriptions "
        "that appeared, vanished or changed holders, and one line per pass; Ctrl-C ends it",
    )
    parser.add_argument(
        "--count",
        type=_count_arg,
        metavar="N",
        help="with --watch: stop after N passes",
    )


def watching(args: argparse.Namespace) -> bool:
    """Whether the scan's arguments ask for ``--watch`` (or its ``--count``)."""
    return args.watch is not None or args.count is not None


def _check(args: argparse.Namespace) -> None:
    if args.watch is None:
        args.parser.error("--count needs --watch SECONDS")
    for name, flag in _REFUSED:
        if getattr(args, name) not in (None, False, []):
            args.parser.error(
                f"--watch writes JSON Lines events of plain scans: it takes no {flag}"
            )


# ---- matching two passes ----


@dataclass(frozen=True)
class Event:
    """What changed for one description between two passes: ``kind`` is ``appeared``,
    ``vanished`` (``description`` as last seen) or ``holders`` (the members ``added``
    and ``removed``; ``description`` as now)."""

    kind: str
    description: Description
    added: tuple[Member, ...] = ()
    removed: tuple[Member, ...] = ()


def _same_file(a: Description, b: Description) -> bool:
    return (a.type, a.mode, a.target) == (b.type, b.mode, b.target)


def _matches(old: Sequence[Description], new: Sequence[Description]) -> dict[int, int]:
    """Pairs ``new index -> old index`` of the descriptions taken to be the same: they
    share a member ``(pid, fd)`` and their type, mode and target. Where several could
    pair, the pairs with the most members in common go first, then the earliest (the
    descriptions are ordered by smallest member): one old description is at most one
    new one, as kcmp told them apart in the new pass."""
    where = {(m.pid, m.fd): i for i, d in enumerate(old) for m in d.members}
    common: dict[tuple[int, int], int] = {}
    for j, d in enumerate(new):
        for m in d.members:
            i = where.get((m.pid, m.fd))
            if i is not None and _same_file(old[i], d):
                common[(j, i)] = common.get((j, i), 0) + 1
    paired: dict[int, int] = {}
    taken: set[int] = set()
    for (j, i), _ in sorted(common.items(), key=lambda item: (-item[1], item[0])):
        if j not in paired and i not in taken:
            paired[j] = i
            taken.add(i)
    return paired


def _refs(members: Sequence[Member]) -> set[tuple[int, int]]:
    return {(m.pid, m.fd) for m in members}


def diff(old: Sequence[Description], new: Sequence[Description]) -> list[Event]:
    """The events from the descriptions of one pass (``old``) to those of the next:
    ``vanished`` in the order of ``old``, then ``holders`` and ``appeared`` in the
    order of ``new``. A member is its ``(pid, fd)``: a command changed by exec() is no
    change of holder."""
    paired = _matches(old, new)
    kept = set(paired.values())
    events = [Event(VANISHED, d) for i, d in enumerate(old) if i not in kept]
    for j, d in enumerate(new):
        if j not in paired:
            continue
        before = old[paired[j]].members
        now, then = _refs(d.members), _refs(before)
        added = tuple(m for m in d.members if (m.pid, m.fd) not in then)
        removed = tuple(m for m in before if (m.pid, m.fd) not in now)
        if added or removed:
            events.append(Event(HOLDERS, d, added, removed))
    events += [Event(APPEARED, d) for j, d in enumerate(new) if j not in paired]
    return events


# ---- records ----


def _header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "record": "header",
        "schema_version": SCHEMA_VERSION,
        "command": "scan --watch",
        "interval": args.watch,
        "include_unshared": args.include_unshared,
    }


def event_record(event: Event, number: int, when: float) -> dict[str, Any]:
    """The ``event`` line of ``event`` in pass ``number`` (started at ``when``)."""
    doc: dict[str, Any] = {
        "record": "event",
        "event": event.kind,
        "time": when,
        "pass": number,
        "description": event.description.to_dict(),
    }
    if event.kind == HOLDERS:
        doc["added"] = [m.to_dict() for m in event.added]
        doc["removed"] = [m.to_dict() for m in event.removed]
    return doc


def pass_record(result: Scan, number: int, when: float) -> dict[str, Any]:
    """The ``pass`` line: that the pass happened, what it read and what it could not
    (skipped processes, undecided fds): a pass with no event is still an answer only
    for the processes it read."""
    return {
        "record": "pass",
        "pass": number,
        "time": when,
        "processes_read": result.processes_read,
        "fds_classified": result.fds_classified,
        "descriptions": len(result.descriptions),
        "skipped": [s.to_dict() for s in result.skipped],
        "undecided": [{"pid": p, "fd": f} for p, f in result.undecided],
    }


def _lines(records: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# ---- the loop ----


class _Terminated(Exception):
    """SIGTERM: a service manager stopping the watch, an expected end (status 0)."""


class _Output:
    """Writes whole passes: a Ctrl-C or SIGTERM during a write is held until the write
    is done (then acted on); a second signal during the same write acts at once."""

    def __init__(self) -> None:
        self.writing = False
        self.held: int | None = None

    def stop(self, signum: int, frame: FrameType | None) -> None:
        if self.writing and self.held is None:
            self.held = signum
            return
        _raise_for(signum)

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        text = _lines(records)
        self.writing = True
        try:
            write_utf8(text)
        finally:
            self.writing = False
        if self.held is not None:
            _raise_for(self.held)

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """``stop`` as the handler of SIGINT where Python's own handler is in place
        (not where the shell ignores it) and of SIGTERM where it has its default
        action, in the main thread (the only one Python runs handlers in)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        ours: dict[int, Callable[[int, FrameType | None], Any] | int] = {
            signal.SIGINT: signal.default_int_handler,
            signal.SIGTERM: signal.SIG_DFL,
        }
        taken = [n for n, h in ours.items() if signal.getsignal(n) is h]
        for n in taken:
            signal.signal(n, self.stop)
        try:
            yield
        finally:
            for n in taken:
                signal.signal(n, ours[n])


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise _Terminated
    raise KeyboardInterrupt


def run_watch(args: argparse.Namespace) -> int:
    """``scan --watch``: passes until Ctrl-C (130, through ``main``), SIGTERM (0) or
    ``--count`` passes (0; 4 when a pass left fds undecided). A pass that reads no
    process ends it (status 1) after its lines: every process given is gone or
    unreadable."""
    _check(args)
    output = _Output()
    with output.handling_signals():
        try:
            output.write([_header(args)])
            return _passes(args, output)
        except _Terminated:
            return 0


def _passes(args: argparse.Namespace, output: _Output) -> int:
    pids = given_pids(args)
    interval: float = args.watch
    previous: tuple[Description, ...] = ()
    incomplete = 0  # passes that left fds undecided
    number = 0
    start = time.monotonic()
    while True:
        number += 1
        when = round(time.time(), 6)
        report = scan_report(
            pids, include_unshared=args.include_unshared, allow_pidfd_getfd=args.allow_pidfd_getfd
        )
        result = scan_from_report(report)
        events = diff(previous, result.descriptions)
        output.write(
            [event_record(e, number, when) for e in events] + [pass_record(result, number, when)]
        )
        if result.processes_read == 0:
            raise CommandError("no process could be read")
        incomplete += bool(result.undecided)
        if args.count is not None and number >= args.count:
            return _ended(incomplete, number, args.allow_pidfd_getfd)
        previous = result.descriptions
        # The cadence is kept from the start of each pass; a pass longer than the
        # interval is followed at once, and the cadence starts again from it.
        start += interval
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            start = time.monotonic()


def _ended(incomplete: int, passes: int, allow_pidfd_getfd: bool) -> int:
    """The status after the last pass: 4, with one stderr line, when a pass left fds
    undecided (its pass line lists them)."""
    if not incomplete:
        return 0
    note(
        f"incomplete answer: fds undecided in {incomplete} of {passes} passes (their "
        f"pass lines list them): {unavailable_reason()}; {undecided_hint(allow_pidfd_getfd)}"
    )
    return EXIT_INCOMPLETE
