"""The ``kcmp-rs holders``, ``epoll`` and ``share`` subcommands, run as ``python -m
kcmp_rs`` on processes the tests start: tables against brute-force kernel truth (the
ctypes baseline), ``-J`` against ``_schema``'s TypedDicts, ``-j`` against ``-J``, exit
statuses and one-line errors. ``holders`` always gets ``-p`` with the tests' own pids:
no test ever reads a process it did not start."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
from typing import Any

import pytest
from _checks import holders_truth, needs_kcmp
from _helpers import ChildProcess, pairwise_groups, reopened_after_fork
from _scan_helpers import (
    check_typed,
    from_json_lines,
    missing_pid,
    parse_table,
    run_cli,
    shared_refs,
    split_skipped,
)
from conftest import Spawn
from kcmp_rs import KcmpType, _schema, baseline, open_fds
from kcmp_rs._results import SCHEMA_VERSION

pytestmark = needs_kcmp

Ref = tuple[int, int]

#: Objects a child's setup must keep alive until the child exits (sockets and epoll
#: objects close when collected). Only ever filled in forked children.
_KEEP: list[Any] = []

HOLDERS_LISTS = {
    "skipped": "skipped",
    "undecided": "undecided",
    "fd_table_shared": "fd_table_shared",
}


def kcmp_rs(*args: object) -> tuple[int, str, str]:
    """``kcmp-rs ARGS``: (exit status, stdout, stderr)."""
    done = run_cli(*map(str, args))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def split_summary(text: str) -> tuple[list[dict[str, list[str]]], str]:
    """The rows of a table followed directly by a one-line summary, and that summary."""
    lines = text.splitlines()
    rows, rest = parse_table("\n".join(lines[:-1]) + "\n")
    assert rest == [], rest
    return rows, lines[-1]


# ---- help ----


@pytest.mark.parametrize(
    ("command", "example"),
    [
        ("holders", "kcmp-rs holders 1234 5 -p 1240,1241 -J"),
        ("epoll", "kcmp-rs epoll 1234 7 -p 1240"),
        ("share", "kcmp-rs share 1234 1240"),
    ],
)
def test_help_shows_an_example(command: str, example: str) -> None:
    status, out, err = kcmp_rs(command, "--help")
    assert status == 0, err
    assert out.startswith(f"usage: kcmp-rs {command}")
    assert "example:\n" in out and example in out
    assert err == ""


# ---- holders ----


@pytest.fixture
def pipe_family(spawn: Spawn, pipe: tuple[int, int]) -> dict[str, Any]:
    """Children sharing the write end of a pipe: ``holder`` keeps it and a copy at
    77, ``closer`` closed it, ``threaded`` keeps it and runs a second thread (one fd
    table, two pids). ``target`` is fd 77 of ``holder``."""
    _, w = pipe

    def keeps_and_moves() -> None:
        os.dup2(w, 77)

    def closes() -> None:
        os.close(w)

    def with_a_thread() -> int:
        started = threading.Event()
        tids: list[int] = []

        def idle() -> None:
            tids.append(threading.get_native_id())
            started.set()
            threading.Event().wait()  # until the child exits

        threading.Thread(target=idle, daemon=True).start()
        started.wait()
        return tids[0]

    holder = spawn(keeps_and_moves)
    closer = spawn(closes)
    threaded = spawn(with_a_thread)
    # One fd table is read under its smallest id, and pids wrap: the thread's may be it.
    reader = min(threaded.pid, threaded.data)
    leaders = [holder.pid, closer.pid, reader]
    return {
        "w": w,
        "holder": holder,
        "closer": closer,
        "threaded": threaded,
        "tid": threaded.data,
        "reader": reader,
        "leaders": leaders,
        "pids": ",".join(map(str, [holder.pid, closer.pid, threaded.pid, threaded.data])),
        "target": (holder.pid, 77),
    }


def test_holders_table_is_the_kernel_truth(pipe_family: dict[str, Any]) -> None:
    pid, fd = pipe_family["target"]
    status, out, err = kcmp_rs("holders", pid, fd, "-p", pipe_family["pids"])
    assert status == 0, err
    assert err == ""
    head, _, table = out.partition("\n")
    ino = os.fstat(pipe_family["w"]).st_ino
    assert head == f"fd {fd} of process {pid}: FIFO w pipe:[{ino}]"
    rows, summary = split_summary(table)
    want = holders_truth((pid, fd), pipe_family["leaders"])
    assert [(int(r["PID"][0]), int(r["FD"][0])) for r in rows] == want
    assert (pid, 77) in want and (pid, pipe_family["w"]) in want
    assert (pipe_family["reader"], pipe_family["w"]) in want
    assert not any(p == pipe_family["closer"].pid for p, _ in want)
    assert all(r["COMMAND"] and r["COMMAND"][0] for r in rows)
    procs = len({p for p, _ in want})
    compared = sum(len(open_fds(p)) for p in pipe_family["leaders"])
    assert summary == (
        f"{len(want)} fds in {procs} processes; 4 processes read, "
        f"{compared} fds compared, 0 skipped"
    )


def test_holders_json_and_json_lines(pipe_family: dict[str, Any]) -> None:
    pid, fd = pipe_family["target"]
    status, out, err = kcmp_rs("holders", pid, fd, "-p", pipe_family["pids"], "-J")
    assert status == 0 and err == "", err
    assert out.endswith("\n") and out.count("\n") == 1
    doc = json.loads(out)
    check_typed(doc, _schema.HoldersDict, "holders")
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert (doc["pid"], doc["fd"]) == (pid, fd)
    members = doc["description"]["members"]
    assert [(m["pid"], m["fd"]) for m in members] == holders_truth(
        (pid, fd), pipe_family["leaders"]
    )
    assert doc["description"]["type"] == "FIFO" and doc["description"]["mode"] == "w"
    assert doc["skipped"] == [] and doc["undecided"] == []
    assert doc["fd_table_shared"] == [sorted([pipe_family["threaded"].pid, pipe_family["tid"]])]
    assert doc["processes_read"] == 4

    status, lines, err = kcmp_rs("holders", pid, fd, "-p", pipe_family["pids"], "-j")
    assert status == 0 and err == "", err
    kinds = [json.loads(line)["record"] for line in lines.splitlines()]
    assert kinds == ["header", "description", "fd_table_shared", "summary"]
    assert from_json_lines(lines, "holders", HOLDERS_LISTS) == doc


def test_holders_notes_a_missing_pid_and_still_answers(pipe_family: dict[str, Any]) -> None:
    pid, fd = pipe_family["target"]
    gone = missing_pid()
    status, out, err = kcmp_rs("holders", pid, fd, "-p", f"{pid},{gone}")
    assert status == 0, err
    assert err == f"kcmp-rs: process {gone} does not exist\n"
    table, skipped, more = split_skipped(out)
    assert skipped == [(gone, "?", "no such process")] and more == ""
    rows, summary = split_summary(table.partition("\n")[2])
    assert [(int(r["PID"][0]), int(r["FD"][0])) for r in rows] == holders_truth((pid, fd), [pid])
    assert summary.endswith("1 skipped")

    status, out, err = kcmp_rs("holders", pid, fd, "-p", pid, "-p", gone, "-J")
    assert status == 0
    assert err == f"kcmp-rs: process {gone} does not exist\n"
    doc = json.loads(out)
    check_typed(doc, _schema.HoldersDict, "holders")
    assert doc["skipped"] == [{"pid": gone, "reason": "no such process"}]
    status, lines, _ = kcmp_rs("holders", pid, fd, "-p", pid, "-p", gone, "-j")
    assert status == 0
    assert from_json_lines(lines, "holders", HOLDERS_LISTS) == doc


def test_holders_that_read_no_process_exit_1_as_scan_does(spawn: Spawn) -> None:
    """The target is read, but none of the processes to search could be: no answer,
    not "no holders"; the summary still says what happened."""
    child = spawn()
    gone = missing_pid()
    for form in ([], ["-J"]):
        status, out, err = kcmp_rs("holders", child.pid, 0, "-p", gone, *form)
        assert status == 1, err
        assert err == (
            f"kcmp-rs: process {gone} does not exist\nkcmp-rs: no process could be read\n"
        )
        if form:
            assert json.loads(out)["processes_read"] == 0
        else:
            table, skipped, _ = split_skipped(out)
            assert table.endswith("0 processes read, 0 fds compared, 1 skipped\n"), out
            assert skipped == [(gone, "?", "no such process")]


def test_holders_target_errors_exit_1_with_one_line(spawn: Spawn) -> None:
    child = spawn()
    gone = missing_pid()
    status, out, err = kcmp_rs("holders", gone, 0, "-p", child.pid)
    assert (status, out) == (1, "")
    assert err == f"kcmp-rs: process {gone} does not exist\n"

    assert 999_999 not in open_fds(child.pid)
    status, out, err = kcmp_rs("holders", child.pid, 999_999, "-p", child.pid)
    assert (status, out) == (1, ""), err
    assert err.count("\n") == 1 and err.startswith("kcmp-rs: ")
    assert f"fd 999999 is not open in process {child.pid}" in err


#: Not fd numbers: what argparse must refuse (status 2) for FD and EPFD. The last two
#: are digits to ``str.isdigit`` but not ASCII ones, which ``pid_arg`` refuses too.
BAD_FDS = ["x", "-1", "1.5", "99999999999", "\u0663", "\u00b3"]


@pytest.mark.parametrize("command", ["holders", "epoll"])
@pytest.mark.parametrize("fd", BAD_FDS)
def test_bad_fd_is_a_usage_error(spawn: Spawn, command: str, fd: str) -> None:
    child = spawn()
    status, out, err = kcmp_rs(command, child.pid, fd, "-p", child.pid)
    assert (status, out) == (2, ""), err
    assert f"usage: kcmp-rs {command}" in err
    name = "FD" if command == "holders" else "EPFD"
    assert f"argument {name}: not an fd: {fd!r}" in err


# ---- epoll ----


def epoll_setup() -> dict[str, int]:
    """An epoll set with three registrations: ``open_tfd`` still names its socket,
    ``closed_tfd`` was closed (``closed_keeper`` keeps its socket open), ``reused_tfd``
    was dup2'ed over with another socket (``reused_keeper`` keeps the registered one)."""
    ep = select.epoll()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    e, f = socket.socketpair()
    _KEEP.extend([ep, a, b, c, d, e, f])
    closed, reused = os.dup(c.fileno()), os.dup(e.fileno())
    ep.register(a.fileno(), select.EPOLLIN)
    ep.register(closed, select.EPOLLOUT)
    ep.register(reused, select.EPOLLIN | select.EPOLLPRI)
    os.close(closed)
    os.dup2(b.fileno(), reused)  # the number now names another socket
    return {
        "epfd": ep.fileno(),
        "open_tfd": a.fileno(),
        "closed_tfd": closed,
        "closed_keeper": c.fileno(),
        "reused_tfd": reused,
        "reused_keeper": e.fileno(),
    }


def expected_registrations(child: ChildProcess) -> dict[int, tuple[str, list[Ref]]]:
    """TFD -> (status, holders) as the child's setup arranged them."""
    p, d = child.pid, child.data
    return {
        d["open_tfd"]: ("open", [(p, d["open_tfd"])]),
        d["closed_tfd"]: ("closed", [(p, d["closed_keeper"])]),
        d["reused_tfd"]: ("reused", [(p, d["reused_keeper"])]),
    }


def test_epoll_table_statuses_and_holders(spawn: Spawn) -> None:
    child = spawn(epoll_setup)
    status, out, err = kcmp_rs("epoll", child.pid)
    assert status == 0 and err == "", err
    rows, summary = split_summary(out)
    assert summary == f"1 epoll set in process {child.pid}, 3 registrations"
    assert [r["EPFD"] for r in rows] == [[str(child.data["epfd"])]] * 3
    tfds = [int(r["TFD"][0]) for r in rows]
    assert tfds == sorted(tfds)  # by fd number, not the kernel's order
    got = {int(r["TFD"][0]): (r["STATUS"][0], list(shared_refs(r["HOLDERS"]))) for r in rows}
    assert got == expected_registrations(child)
    events = {int(r["TFD"][0]): int(r["EVENTS"][0], 16) for r in rows}
    assert events[child.data["open_tfd"]] & select.EPOLLIN
    assert events[child.data["closed_tfd"]] & select.EPOLLOUT
    assert events[child.data["reused_tfd"]] & select.EPOLLPRI
    # Python's epoll registers the fd number as the data's low 32 bits (it leaves the
    # high ones as they were): the table shows all 64, as -J does.
    data = {int(r["TFD"][0]): int(r["DATA"][0], 16) for r in rows}
    assert all(d & 0xFFFFFFFF == tfd for tfd, d in data.items())
    status, doc, _ = kcmp_rs("epoll", child.pid, "-J")
    assert status == 0
    regs = json.loads(doc)["registrations"]
    assert {r["tfd"]: (r["events"], r["data"]) for r in regs} == {
        tfd: (events[tfd], data[tfd]) for tfd in data
    }

    # The same set asked by number: the same table.
    status, alone, err = kcmp_rs("epoll", child.pid, child.data["epfd"])
    assert (status, alone, err) == (0, out, "")


def test_epoll_json_and_json_lines(spawn: Spawn) -> None:
    child = spawn(epoll_setup)
    status, out, err = kcmp_rs("epoll", child.pid, "-J")
    assert status == 0 and err == "", err
    doc = json.loads(out)
    assert set(doc) == {"schema_version", "pid", "registrations"}
    assert doc["schema_version"] == 2 and doc["pid"] == child.pid
    assert isinstance(doc["registrations"], list) and len(doc["registrations"]) == 3
    got = {}
    for i, reg in enumerate(doc["registrations"]):
        reg = dict(reg)
        assert reg.pop("epfd") == child.data["epfd"]
        check_typed(reg, _schema.EpollTargetDict, f"registrations[{i}]")
        assert reg["index"] == 0
        got[reg["tfd"]] = (reg["status"], [(m["pid"], m["fd"]) for m in reg["holders"]])
    assert got == expected_registrations(child)

    status, lines, err = kcmp_rs("epoll", child.pid, "-j")
    assert status == 0 and err == "", err
    kinds = [json.loads(line)["record"] for line in lines.splitlines()]
    assert kinds == ["header", "registration", "registration", "registration", "summary"]
    assert from_json_lines(lines, "epoll", {"registrations": "registration"}) == doc


def _two_sets_named_hostile() -> dict[str, int]:
    """Two epoll sets (the first with three registrations, a second watching one of
    them again), in a process whose command holds an escape, a newline and a byte
    that is not UTF-8."""
    import ctypes

    found = epoll_setup()
    second = select.epoll()
    second.register(found["open_tfd"], select.EPOLLOUT)
    _KEEP.append(second)
    ctypes.CDLL(None).prctl(15, b"ep\x1b[1m\n\xff", 0, 0, 0)  # PR_SET_NAME
    return {**found, "second": second.fileno()}


def test_epoll_json_from_the_core_is_the_python_document_byte_for_byte(spawn: Spawn) -> None:
    """``kcmp-rs epoll -J`` and ``-j`` are written by Rust from the one native pass over
    every set: the bytes of ``json.dumps`` of the document the Python views give, and
    of the JSON Lines built from it."""
    from kcmp_rs import _native
    from kcmp_rs._queries import epoll_sets_from_report
    from kcmp_rs.cli._render import json_lines

    child = spawn(_two_sets_named_hostile)
    document = run_cli("epoll", str(child.pid), "-J")
    lines = run_cli("epoll", str(child.pid), "-j")
    report = _native.epoll_sets(child.pid)
    sets = epoll_sets_from_report(report)
    assert [epfd for epfd, _ in sets] == sorted([child.data["epfd"], child.data["second"]])
    registrations = [{"epfd": e, **t.to_dict()} for e, targets in sets for t in targets]
    assert len(registrations) == 4
    doc = {"schema_version": SCHEMA_VERSION, "pid": child.pid, "registrations": registrations}
    assert document.returncode == lines.returncode == 0, (document.stderr, lines.stderr)
    assert document.stdout == (json.dumps(doc, ensure_ascii=False) + "\n").encode()
    assert lines.stdout == json_lines(doc, "epoll", {"registrations": "registration"}).encode()
    assert b"command_bytes_b64" in document.stdout


def test_epoll_sets_refuse_none_as_the_epfd_asked(spawn: Spawn) -> None:
    from kcmp_rs import _native, epoll_targets

    pid = spawn().pid
    with pytest.raises(TypeError, match=r"^epfd must be an int, not NoneType$"):
        epoll_targets(pid, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^epfd must be an int, not NoneType$"):
        _native.epoll_sets(pid, None)  # type: ignore[arg-type]


def test_epoll_of_a_non_epoll_fd_exits_1(spawn: Spawn) -> None:
    child = spawn(epoll_setup)
    fd = child.data["open_tfd"]
    status, out, err = kcmp_rs("epoll", child.pid, fd)
    assert (status, out) == (1, ""), err
    # The library's message names the process: not repeated in front of it.
    assert err == f"kcmp-rs: fd {fd} of process {child.pid} is not an epoll fd\n"


def test_epoll_of_a_process_without_epoll_sets(spawn: Spawn) -> None:
    child = spawn()
    assert not any(
        os.readlink(f"/proc/{child.pid}/fd/{fd}") == "anon_inode:[eventpoll]"
        for fd in open_fds(child.pid)
    )
    status, out, err = kcmp_rs("epoll", child.pid)
    assert status == 0 and err == "", err
    assert out.splitlines()[-1] == f"0 epoll sets in process {child.pid}, 0 registrations"
    assert "0 epoll sets" in out
    status, out, _ = kcmp_rs("epoll", child.pid, "-J")
    assert status == 0
    assert json.loads(out) == {"schema_version": 2, "pid": child.pid, "registrations": []}


# ---- share ----


def test_share_with_itself_is_one_line(spawn: Spawn) -> None:
    child = spawn()
    descriptions = pairwise_groups([(child.pid, fd) for fd in open_fds(child.pid)])
    status, out, err = kcmp_rs("share", child.pid, child.pid)
    assert status == 0 and err == "", err
    assert out == (
        f"Process {child.pid} trivially shares everything with itself: every task "
        f"resource and all its {len(descriptions)} open file descriptions.\n"
    )


def lacks(pid: int, zombie: int) -> set[str]:
    """Which of IO and SYSVSEM ``pid`` lacks: a zombie has neither, and kcmp calls two
    absent ones equal."""
    return {
        name
        for name, ty in (("IO", KcmpType.IO), ("SYSVSEM", KcmpType.SYSVSEM))
        if baseline.kcmp(pid, zombie, ty) == 0
    }


NONE_NOTES = {
    "IO": "neither process has an I/O context",
    "SYSVSEM": "neither process has a SysV semaphore undo list",
}


def test_share_lists_inherited_and_reopened_files(spawn: Spawn, tmp_path: Any) -> None:
    path = str(tmp_path / "shared-file")
    with open(path, "w") as f:
        f.write("x")
    inherited = os.open(path, os.O_RDONLY)
    try:

        def reopens() -> int:
            return os.open(path, os.O_RDONLY)

        a = spawn(reopens)  # holds `inherited` (fork), and its own open of the file
        b = spawn(reopens)  # the same, another open of its own
        zombie = spawn(expect_exit=None)
        os.kill(zombie.pid, signal.SIGKILL)
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # reaped at teardown
        status, out, err = kcmp_rs("share", a.pid, b.pid)
    finally:
        os.close(inherited)
    assert status == 0 and err == "", err
    resources, shared, reopened = out.split("\n\n")

    rows, rest = parse_table(resources + "\n")
    assert rest == []
    by_name = {r["RESOURCE"][0]: r for r in rows}
    assert list(by_name) == ["VM", "FILES", "FS", "SIGHAND", "IO", "SYSVSEM"]
    for name in ("VM", "FILES", "FS", "SIGHAND"):
        assert by_name[name]["SHARED"] == ["no"], by_name[name]
    # Children of the test process have no I/O context and no undo list: kcmp calls
    # the two absent ones "equal", which the command must not report as shared.
    assert lacks(a.pid, zombie.pid) == lacks(b.pid, zombie.pid) == {"IO", "SYSVSEM"}
    for name in ("IO", "SYSVSEM"):
        assert by_name[name]["SHARED"] == ["no"], by_name[name]
        assert by_name[name]["NOTE"] == [NONE_NOTES[name]]

    # Shared descriptions: exactly the pairs the kernel says are one description.
    pairs = {
        (f1, f2)
        for f1 in open_fds(a.pid)
        for f2 in open_fds(b.pid)
        if baseline.kcmp(a.pid, b.pid, KcmpType.FILE, f1, f2) == 0
    }
    head, _, table = shared.partition("\n")
    groups = pairwise_groups([(a.pid, f) for f in open_fds(a.pid)])
    count = sum(1 for g in groups if any(fd in {f1 for f1, _ in pairs} for _, fd in g))
    assert head == f"Open file descriptions shared by {a.pid} and {b.pid}: {count}"
    rows, _ = parse_table(table + "\n")
    got = {
        (int(f1), int(f2))
        for r in rows
        for f1 in r[f"FDS OF {a.pid}"][0].split(",")
        for f2 in r[f"FDS OF {b.pid}"][0].split(",")
    }
    assert got == pairs
    assert (inherited, inherited) in pairs
    [row] = [r for r in rows if str(inherited) in r[f"FDS OF {a.pid}"][0].split(",")]
    assert row["MODE"] == ["r"] and row["TARGET"] == [path]

    # Files both have open through different descriptions: each one's own open.
    head, _, table = reopened.partition("\n")
    assert head == "Files both have open through different descriptions: 1"
    rows, rest = parse_table(table)
    assert rest == []
    assert rows == [
        {f"FDS OF {a.pid}": [str(a.data)], f"FDS OF {b.pid}": [str(b.data)], "TARGET": [path]}
    ]


def test_share_lists_no_reopened_file_one_side_holds_only_through_the_shared_one(
    spawn: Spawn, tmp_path: Any
) -> None:
    """This process opens a file, forks, opens the file again: the child holds it only
    through the inherited description, so the file is not open through different
    descriptions in both (no row with "-" on one side), in either order, in any form."""
    me = os.getpid()
    with reopened_after_fork(spawn, str(tmp_path)) as (child, inherited, _):
        runs = [
            (kcmp_rs("share", *pids), kcmp_rs("share", *pids, "-J"))
            for pids in ((me, child), (child, me))
        ]
    for (status, out, err), (json_status, doc, json_err) in runs:
        assert (status, err) == (0, ""), err
        # The spawn helper's pipes are the only files open through different
        # descriptions on both sides: two ends of one pipe, one per process.
        _, shared, reopened = out.split("\n\n")
        assert shared.startswith("Open file descriptions shared by ")
        head, _, table = reopened.partition("\n")
        assert head.startswith("Files both have open through different descriptions: ")
        rows, _ = parse_table(table)
        assert [r["TARGET"][0].startswith("pipe:[") for r in rows] == [True] * len(rows)
        assert all(r[k] != ["-"] for r in rows for k in r), rows
        assert (json_status, json_err) == (0, "")
        pairs = json.loads(doc)["reopened"]
        assert len(pairs) == len(rows) and all(p["fds1"] and p["fds2"] for p in pairs)
        assert all(p["target"].startswith("pipe:[") for p in pairs), pairs
        assert [inherited] in [p["fds1"] for p in json.loads(doc)["shared"]]
