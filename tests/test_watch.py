"""``kcmp-rs scan --watch SECONDS``: JSON Lines events of descriptions that appeared,
vanished or changed holders between passes, a pass line each, Ctrl-C and a reader
gone away ending it quietly.

The matching of two passes (``_watch.diff``) is tested on descriptions built here.
The command runs on children of the test (``Puppet``) whose fds change one system
call at a time, on the test's word: a change is seen whole by one pass, never half.
The test never guesses when the watcher's next pass comes: it makes a change, then
reads pass lines until one carries events, which must be exactly that change's.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _helpers import fork, libc
from _scan_helpers import check_description, check_member, missing_pid, run_cli
from kcmp_rs import _config
from kcmp_rs._results import Description, Member, Scan, Skipped
from kcmp_rs.cli import _watch
from kcmp_rs.cli._watch import APPEARED, HOLDERS, VANISHED, Event, diff

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

#: The console script, as a user runs it (its Ctrl-C handling is the command's own).
SCRIPT = Path(sys.executable).parent / "kcmp-rs"
TIMEOUT = 60.0
#: Short: the test waits for passes, never for the interval to pass.
INTERVAL = "0.02"

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


# ---- the matching, on descriptions built here ----


def _d(target: str, *refs: tuple[int, int], kind: str = "FIFO", mode: str = "r") -> Description:
    members = tuple(Member(p, f, f"c{p}") for p, f in sorted(refs))
    return Description(target, mode, members, kind)


def _m(pid: int, fd: int) -> Member:
    return Member(pid, fd, f"c{pid}")


def test_the_first_pass_reports_every_description_as_appeared() -> None:
    new = [_d("pipe:[1]", (1, 3), (2, 3)), _d("/a", (1, 4), (1, 5), kind="REG")]
    assert diff([], new) == [Event(APPEARED, new[0]), Event(APPEARED, new[1])]


def test_unchanged_passes_give_no_event() -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3)), _d("/a", (1, 4), (1, 5), kind="REG")]
    again = [_d("pipe:[1]", (1, 3), (2, 3)), _d("/a", (1, 4), (1, 5), kind="REG")]
    assert diff(old, again) == []


def test_holders_added_and_removed_in_one_event() -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3), (3, 7))]
    new = [_d("pipe:[1]", (1, 3), (2, 3), (4, 9))]
    assert diff(old, new) == [Event(HOLDERS, new[0], (_m(4, 9),), (_m(3, 7),))]


def test_a_description_no_member_of_which_remains_is_vanished_and_appeared() -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3))]
    new = [_d("pipe:[1]", (1, 4), (2, 4))]
    assert diff(old, new) == [Event(VANISHED, old[0]), Event(APPEARED, new[0])]


@pytest.mark.parametrize(
    "changed",
    [
        {"target": "pipe:[2]"},  # the fd now names another file
        {"kind": "SOCK"},
        {"mode": "w"},
    ],
)
def test_a_shared_member_on_another_file_is_no_match(changed: dict[str, str]) -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3))]
    target = changed.get("target", "pipe:[1]")
    kind, mode = changed.get("kind", "FIFO"), changed.get("mode", "r")
    new = [_d(target, (1, 3), (2, 3), kind=kind, mode=mode)]
    assert diff(old, new) == [Event(VANISHED, old[0]), Event(APPEARED, new[0])]


def test_a_command_changed_by_exec_is_no_change_of_holder() -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3))]
    renamed = Description("pipe:[1]", "r", (Member(1, 3, "new"), _m(2, 3)), "FIFO")
    assert diff(old, [renamed]) == []


def test_one_old_description_pairs_with_one_new_one_the_most_in_common_first() -> None:
    # Each of (1,3) (2,3) (2,4) reopened the same file between passes, (2,3) and (2,4)
    # into one description: kcmp tells the two new ones apart, so only one can be old.
    old = [_d("/f", (1, 3), (2, 3), (2, 4), kind="REG")]
    new = [_d("/f", (1, 3), kind="REG"), _d("/f", (2, 3), (2, 4), (3, 5), kind="REG")]
    assert diff(old, new) == [
        Event(HOLDERS, new[1], (_m(3, 5),), (_m(1, 3),)),
        Event(APPEARED, new[0]),
    ]


def test_on_a_tie_the_earliest_new_description_pairs() -> None:
    old = [_d("/f", (1, 3), (2, 3), kind="REG")]
    new = [_d("/f", (1, 3), (1, 4), kind="REG"), _d("/f", (2, 3), (2, 4), kind="REG")]
    assert diff(old, new) == [
        Event(HOLDERS, new[0], (_m(1, 4),), (_m(2, 3),)),
        Event(APPEARED, new[1]),
    ]


def test_events_come_vanished_then_holders_then_appeared() -> None:
    old = [_d("pipe:[1]", (1, 3), (2, 3)), _d("pipe:[2]", (1, 5), (2, 5))]
    new = [_d("pipe:[0]", (1, 1), (2, 1)), _d("pipe:[2]", (1, 5), (2, 5), (2, 6))]
    assert [e.kind for e in diff(old, new)] == [VANISHED, HOLDERS, APPEARED]


def test_records_carry_the_description_as_scan_gives_it() -> None:
    d = _d("pipe:[1]", (1, 3), (2, 3))
    holders = _watch.event_record(Event(HOLDERS, d, (_m(2, 3),), ()), 4, 12.5)
    assert holders == {
        "record": "event",
        "event": "holders",
        "time": 12.5,
        "pass": 4,
        "description": d.to_dict(),
        "added": [{"pid": 2, "fd": 3, "command": "c2"}],
        "removed": [],
    }
    check_description(holders["description"])
    appeared = _watch.event_record(Event(APPEARED, d), 1, 1.0)
    assert "added" not in appeared and "removed" not in appeared
    scan = Scan((d,), (Skipped(9, "exited"),), 2, 7, ((2, 8),), ())
    assert _watch.pass_record(scan, 3, 2.0) == {
        "record": "pass",
        "pass": 3,
        "time": 2.0,
        "processes_read": 2,
        "fds_classified": 7,
        "descriptions": 1,
        "skipped": [{"pid": 9, "reason": "exited"}],
        "undecided": [{"pid": 2, "fd": 8}],
    }


#: Each signal that ends the watch, and what it raises inside the command.
STOPPING = [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, _watch._Terminated)]


@pytest.mark.parametrize(("signum", "raised"), STOPPING)
def test_a_signal_while_a_pass_is_written_waits_for_its_end(
    monkeypatch: pytest.MonkeyPatch, signum: int, raised: type[BaseException]
) -> None:
    output = _watch._Output()
    written: list[str] = []

    def write(text: str) -> None:
        output.stop(signum, None)  # arrives mid-write: held
        written.append(text)

    monkeypatch.setattr(_watch, "write_utf8", write)
    with pytest.raises(raised):
        output.write([{"record": "pass", "pass": 1}, {"record": "pass", "pass": 2}])
    assert written == ['{"record": "pass", "pass": 1}\n{"record": "pass", "pass": 2}\n']


@pytest.mark.parametrize(("signum", "raised"), STOPPING)
def test_a_second_signal_during_one_write_acts_at_once(
    monkeypatch: pytest.MonkeyPatch, signum: int, raised: type[BaseException]
) -> None:
    output = _watch._Output()

    def stuck(text: str) -> None:  # a reader that stopped reading
        output.stop(signal.SIGINT, None)
        output.stop(signum, None)
        raise AssertionError("not reached")

    monkeypatch.setattr(_watch, "write_utf8", stuck)
    with pytest.raises(raised):
        output.write([{"record": "pass"}])


def test_signals_are_handled_only_while_watching_and_then_put_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    output = _watch._Output()
    with output.handling_signals():
        assert signal.getsignal(signal.SIGINT) == output.stop
        assert signal.getsignal(signal.SIGTERM) == output.stop
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# ---- children whose fds the test changes one system call at a time ----


class Puppet:
    """A child holding only /dev/null on 0-2 (each its own description, unshared), its
    command pipes and the fds ``keep``; named ``name`` (its command). It runs one
    command at a time, each a single system call on its fds: ``dup FD``, ``close
    FD``, ``pipe`` (answers ``R W INODE``), ``recv FD`` (an fd received over the
    socket FD), ``exit``."""

    def __init__(self, name: str, keep: Sequence[int] = ()) -> None:
        self.name = name
        to_r, self._to = os.pipe()
        self._back, back_w = os.pipe()
        self.pid = fork()
        if self.pid == 0:  # pragma: no cover - the child
            self._child(to_r, back_w, keep)
        os.close(to_r)
        os.close(back_w)
        self.status: int | None = None
        assert self._answer("start") == "ready\n"

    def _child(self, to_r: int, back_w: int, keep: Sequence[int]) -> None:
        code = 1
        try:
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            name = ctypes.create_string_buffer(self.name.encode())
            libc.prctl(_PR_SET_NAME, ctypes.addressof(name), 0, 0, 0)
            _close_all_but({to_r, back_w, *keep})
            for fd in (0, 1, 2):
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, fd)
                os.close(null)
            os.write(back_w, b"ready\n")
            while line := os.read(to_r, 4096).decode():
                os.write(back_w, (_obey(line.split()) + "\n").encode())
            code = 0
        except BaseException:  # said to the test, which waits for an answer
            os.write(back_w, traceback.format_exc().encode())
        finally:
            os._exit(code)

    def do(self, *command: object) -> list[int]:
        """Has the child run ``command``; the numbers it answered."""
        os.write(self._to, " ".join(map(str, command)).encode())
        if command[0] == "exit":
            _, self.status = os.waitpid(self.pid, 0)
            return []
        return [int(n) for n in self._answer(command).split()]

    def _answer(self, command: object) -> str:
        ready, _, _ = select.select([self._back], [], [], TIMEOUT)
        assert ready, f"{self.name} did not answer {command}"
        answer = os.read(self._back, 4096).decode()
        assert answer and not answer.startswith("Traceback"), f"{self.name}: {command}: {answer}"
        return answer

    def member(self, fd: int) -> dict[str, Any]:
        return {"pid": self.pid, "fd": fd, "command": self.name}

    def end(self) -> None:
        if self.status is None:
            os.close(self._to)  # the child's read sees the end and it exits
            _, self.status = os.waitpid(self.pid, 0)
            assert os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0
        os.close(self._back)


def _close_all_but(keep: set[int]) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, limit)


def _obey(words: list[str]) -> str:
    """One command of a ``Puppet``, in the child: one system call on its fds."""
    verb, args = words[0], [int(w) for w in words[1:]]
    if verb == "dup":
        return str(os.dup(args[0]))
    if verb == "close":
        os.close(args[0])
        return ""
    if verb == "pipe":
        r, w = os.pipe()
        return f"{r} {w} {os.fstat(r).st_ino}"
    if verb == "recv":
        sock = socket.socket(fileno=args[0])  # no new fd: the command stays one change
        try:
            _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        finally:
            sock.detach()
        return str(fds[0])
    assert verb == "exit", words
    os._exit(0)


@pytest.fixture
def puppet() -> Iterator[Callable[..., Puppet]]:
    """Starts a ``Puppet(name, keep)``; each is released and reaped at the test's end."""
    started: list[Puppet] = []

    def start(name: str, keep: Sequence[int] = ()) -> Puppet:
        started.append(Puppet(name, keep))
        return started[-1]

    yield start
    for p in started:
        p.end()


# ---- the watcher ----


class Watcher:
    """``kcmp-rs scan --watch`` running, its stdout read a line at a time."""

    def __init__(self, *args: object) -> None:
        argv = [str(SCRIPT), "scan", *map(str, args)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.passes: list[dict[str, Any]] = []

    def line(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "no line from the watcher in time"
            chunk = os.read(self.fd, 65536)
            assert chunk, f"the watcher ended: {self.stop()}"
            self.buffer += chunk
        text, _, self.buffer = self.buffer.partition(b"\n")
        doc: dict[str, Any] = json.loads(text)
        return doc

    def next_pass(self) -> list[dict[str, Any]]:
        """The event lines of the next pass (its pass line in ``passes``)."""
        events = []
        while (doc := self.line())["record"] == "event":
            events.append(doc)
        assert doc["record"] == "pass", doc
        assert [e["pass"] for e in events] == [doc["pass"]] * len(events)
        self.passes.append(doc)
        return events

    def changed(self) -> list[dict[str, Any]]:
        """The events of the first pass that has any."""
        while not (events := self.next_pass()):
            pass
        return events

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, bytes, bytes]:
        """Sends ``sig``: the status, the rest of stdout, stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rest, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, self.buffer + rest, err


@pytest.fixture
def watch() -> Iterator[Callable[..., Watcher]]:
    """Starts a ``Watcher(*args)``; one still running at the test's end is killed."""
    started: list[Watcher] = []

    def start(*args: object) -> Watcher:
        started.append(Watcher(*args))
        return started[-1]

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.communicate(timeout=TIMEOUT)


def _event(kind: str, target: str, members: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    description = {"type": "FIFO", "mode": "r", "target": target, "members": members}
    return {"event": kind, "description": description, **extra}


def _bare(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what the test cannot know (record, time, pass)."""
    return [{k: v for k, v in e.items() if k not in ("record", "time", "pass")} for e in events]


def test_watch_reports_each_change_once_and_exactly(
    puppet: Callable[..., Puppet], watch: Callable[..., Watcher]
) -> None:
    r, w = os.pipe()
    pipe = f"pipe:[{os.fstat(r).st_ino}]"
    a, b = puppet("watch-a", [r]), puppet("watch-b", [r])
    parent, child_end = socket.socketpair()
    sock_fd = child_end.fileno()
    c = puppet("watch-c", [sock_fd])
    child_end.close()
    os.close(w)
    watcher = watch("--watch", INTERVAL, "-p", f"{a.pid},{b.pid},{c.pid}")
    try:
        assert watcher.line() == {
            "record": "header",
            "schema_version": 2,
            "command": "scan --watch",
            "interval": float(INTERVAL),
            "include_unshared": False,
        }
        shared = [a.member(r), b.member(r)]
        assert _bare(watcher.next_pass()) == [_event("appeared", pipe, shared)]
        first = watcher.passes[0]
        assert first["pass"] == 1 and first["processes_read"] == 3
        assert (first["skipped"], first["undecided"], first["descriptions"]) == ([], [], 1)

        socket.send_fds(parent, [b"x"], [r])  # c receives a copy: a new holder
        k = c.do("recv", sock_fd)[0]
        now = [*shared, c.member(k)]
        assert _bare(watcher.changed()) == [
            _event("holders", pipe, now, added=[c.member(k)], removed=[])
        ]
        os.close(r)

        (r2,) = a.do("dup", r)
        with_dup = sorted([*now, a.member(r2)], key=lambda m: (m["pid"], m["fd"]))
        assert _bare(watcher.changed()) == [
            _event("holders", pipe, with_dup, added=[a.member(r2)], removed=[])
        ]
        a.do("close", r2)
        assert _bare(watcher.changed()) == [
            _event("holders", pipe, now, added=[], removed=[a.member(r2)])
        ]

        b.do("exit")  # a holder exits
        left = [a.member(r), c.member(k)]
        assert _bare(watcher.changed()) == [
            _event("holders", pipe, left, added=[], removed=[b.member(r)])
        ]
        assert [s["pid"] for s in watcher.passes[-1]["skipped"]] == [b.pid]
        assert watcher.passes[-1]["processes_read"] == 2

        pr, _, inode = a.do("pipe")  # new descriptions, unshared: no event
        (pr2,) = a.do("dup", pr)
        fresh = _event("appeared", f"pipe:[{inode}]", [a.member(pr), a.member(pr2)])
        assert _bare(watcher.changed()) == [fresh]
        a.do("close", pr2)
        assert _bare(watcher.changed()) == [{**fresh, "event": "vanished"}]
        a.do("close", r)  # c holds it alone: no longer shared
        assert _bare(watcher.changed()) == [_event("vanished", pipe, left)]
    finally:
        status, rest, err = watcher.stop()
        parent.close()
    assert (status, err) == (130, b"")
    _check_whole_lines(rest)


def _check_whole_lines(rest: bytes) -> None:
    """What a Ctrl-C left: whole lines, the last one a pass line."""
    assert rest == b"" or rest.endswith(b"\n"), rest[-200:]
    records = [json.loads(line) for line in rest.splitlines()]
    assert not records or records[-1]["record"] == "pass", records[-1:]


def test_with_all_the_first_pass_is_the_scan_and_count_ends_it(
    puppet: Callable[..., Puppet],
) -> None:
    r, w = os.pipe()
    pipe = f"pipe:[{os.fstat(r).st_ino}]"
    a, b = puppet("watch-a", [r, w]), puppet("watch-b", [r])
    os.close(r)
    os.close(w)
    done = subprocess.run(
        [
            str(SCRIPT),
            "scan",
            "--watch",
            INTERVAL,
            "--count",
            "3",
            "--all",
            "-p",
            f"{a.pid},{b.pid}",
        ],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["include_unshared"] is True
    passes = [x for x in records if x["record"] == "pass"]
    assert [p["pass"] for p in passes] == [1, 2, 3] and records[-1] is passes[-1]
    events = records[1:-3]
    expected = kcmp_rs.scan([a.pid, b.pid], include_unshared=True).to_dict()["descriptions"]
    assert [e["description"] for e in events] == expected
    assert {(e["event"], e["pass"]) for e in events} == {("appeared", 1)}
    assert _event("appeared", pipe, [a.member(r), b.member(r)]) in _bare(events)
    assert [p["descriptions"] for p in passes] == [len(expected)] * 3
    for e in events:
        for m in e["description"]["members"]:
            check_member(m)


def test_passes_keep_the_cadence_from_the_first(puppet: Callable[..., Puppet]) -> None:
    a = puppet("watch-a")
    done = run_cli("scan", "--watch", "0.1", "--count", "3", "-p", str(a.pid))
    assert (done.returncode, done.stderr) == (0, b"")
    starts = [json.loads(line)["time"] for line in done.stdout.splitlines()[1:]]
    # Pass 3 is due 0.2 s after pass 1 (back to back they would be milliseconds apart);
    # the margin is for the two clocks, the wait's and the wall clock of "time".
    assert starts == sorted(starts) and starts[2] - starts[0] > 0.15, starts


def test_fds_left_undecided_are_listed_and_end_it_with_4(puppet: Callable[..., Puppet]) -> None:
    r, w = os.pipe()
    a, b = puppet("watch-a", [r]), puppet("watch-b", [r])
    os.close(r)
    os.close(w)
    env = {**os.environ, _config.NO_KCMP: "1"}
    argv = [str(SCRIPT), "scan", "--watch", INTERVAL, "--count", "2", "-p", f"{a.pid},{b.pid}"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=TIMEOUT, check=False)
    assert done.returncode == 4, done.stderr
    passes = [json.loads(line) for line in done.stdout.splitlines()[1:]]
    assert [p["record"] for p in passes] == ["pass", "pass"]  # undecided: in no description
    for p in passes:
        undecided = {(u["pid"], u["fd"]) for u in p["undecided"]}
        assert {(a.pid, r), (b.pid, r)} <= undecided
        assert {pid for pid, _ in undecided} == {a.pid, b.pid}
    err = done.stderr.decode()
    assert err.startswith("kcmp-rs: incomplete answer: fds undecided in 2 of 2 passes"), err
    assert "--allow-pidfd-getfd" in err and err.count("\n") == 1


def test_a_pass_that_reads_no_process_ends_it_with_1() -> None:
    gone = missing_pid()
    done = run_cli("scan", "--watch", INTERVAL, "-p", str(gone))
    assert done.returncode == 1
    assert done.stderr == b"kcmp-rs: no process could be read\n"
    header, only = (json.loads(line) for line in done.stdout.splitlines())
    assert header["record"] == "header"
    assert only["processes_read"] == 0
    assert only["skipped"] == [{"pid": gone, "reason": "no such process"}]


def test_every_pass_names_the_processes_it_skipped(puppet: Callable[..., Puppet]) -> None:
    a, gone = puppet("watch-a"), missing_pid()
    done = run_cli("scan", "--watch", INTERVAL, "--count", "2", "-p", f"{a.pid},{gone}")
    assert (done.returncode, done.stderr) == (0, b"")
    passes = [json.loads(line) for line in done.stdout.splitlines()[1:]]
    assert [(p["pass"], p["processes_read"]) for p in passes] == [(1, 1), (2, 1)]
    for p in passes:
        assert p["skipped"] == [{"pid": gone, "reason": "no such process"}]


#: Each signal that ends the watch, and the command's exit status for it.
ENDING = [(signal.SIGINT, 130), (signal.SIGTERM, 0)]


@pytest.mark.parametrize(("signum", "status"), ENDING, ids=["ctrl-c", "sigterm"])
def test_a_signal_between_passes_ends_it_after_its_last_pass(
    puppet: Callable[..., Puppet], watch: Callable[..., Watcher], signum: int, status: int
) -> None:
    a = puppet("watch-a")
    watcher = watch("--watch", "30", "-p", a.pid)  # waiting when the signal comes
    watcher.line()
    assert watcher.next_pass() == []
    assert watcher.stop(signum) == (status, b"", b"")


@pytest.mark.parametrize(("signum", "status"), ENDING, ids=["ctrl-c", "sigterm"])
def test_a_signal_amid_passes_leaves_whole_lines(
    puppet: Callable[..., Puppet], watch: Callable[..., Watcher], signum: int, status: int
) -> None:
    a = puppet("watch-a")
    # Back to back, this process's many fds in each: the signal meets a scan or a write.
    watcher = watch("--watch", "0.000001", "--all", "-p", f"{a.pid},{os.getpid()}")
    watcher.line()
    for _ in range(3):
        watcher.next_pass()
    ended, rest, err = watcher.stop(signum)
    assert (ended, err) == (status, b"")
    _check_whole_lines(rest)


def test_a_reader_gone_ends_it_quietly_with_141(
    puppet: Callable[..., Puppet], watch: Callable[..., Watcher]
) -> None:
    a = puppet("watch-a")
    watcher = watch("--watch", INTERVAL, "-p", a.pid)
    assert watcher.line()["record"] == "header"
    assert watcher.proc.stdout is not None
    watcher.proc.stdout.close()  # its next pass meets a closed pipe
    assert watcher.proc.wait(timeout=TIMEOUT) == 141
    assert watcher.proc.stderr is not None and watcher.proc.stderr.read() == b""
    watcher.proc.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--watch", "0"], "argument --watch: not a number of seconds above 0 and at most "),
        (["--watch", "-1"], "not a number of seconds above 0 and at most 86400: '-1'"),
        (["--watch", "nan"], "not a number of seconds above 0 and at most 86400: 'nan'"),
        (["--watch", "inf"], "not a number of seconds above 0 and at most 86400: 'inf'"),
        (["--watch", "86401"], "not a number of seconds above 0 and at most 86400: '86401'"),
        (["--watch", "soon"], "not a number of seconds above 0 and at most 86400: 'soon'"),
        (["--watch", "1_0"], "not a number of seconds above 0 and at most 86400: '1_0'"),
        (["--watch", " 5"], "not a number of seconds above 0 and at most 86400: ' 5'"),
        (["--watch", "1e-400"], "not a number of seconds above 0 and at most 86400: '1e-400'"),
        (["--watch"], "argument --watch: expected one argument"),
        (
            ["--watch", "1", "--count", "0"],
            "argument --count: not a positive number of passes: '0'",
        ),
        (["--watch", "1", "--count", "-2"], "not a positive number of passes: '-2'"),
        (["--watch", "1", "--count", "1.5"], "not a positive number of passes: '1.5'"),
        (["--count", "3"], "error: --count needs --watch SECONDS"),
        (["--watch", "1", "-J"], "--watch writes JSON Lines events of plain scans: it takes no -J"),
        (["--watch", "1", "--dot"], "it takes no --dot"),
        (["--watch", "1", "--ipc"], "it takes no --ipc"),
        (["--watch", "1", "--example"], "it takes no --example"),
        (["--watch", "1", "--across", "net"], "it takes no --across"),
        (["--watch", "1", "--inside", "/"], "it takes no --inside"),
        (["--watch", "1", "--allow", "type=FIFO"], "it takes no --allow"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = run_cli("scan", *args)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"", err
    assert err.startswith("usage: kcmp-rs scan "), err
    assert message in err.splitlines()[-1], err


def test_json_lines_is_what_watch_writes_anyway(puppet: Callable[..., Puppet]) -> None:
    a = puppet("watch-a")
    done = run_cli("scan", "-j", "--watch", INTERVAL, "--count", "1", "-p", str(a.pid))
    assert (done.returncode, done.stderr) == (0, b"")
    assert [json.loads(line)["record"] for line in done.stdout.splitlines()] == ["header", "pass"]
