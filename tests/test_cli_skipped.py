"""The table commands (``scan``, ``holders``, ``who``) name the processes they could not
read: pid, command name where one is known, reason; at most ``SKIPPED_NAMED`` of them,
then how many more (``-J`` lists every one). The processes given by ``-p`` are also
noted on stderr, bounded the same way."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import pytest
from _helpers import fork
from _scan_helpers import missing_pid, run_cli, split_skipped
from kcmp_rs.cli._render import SKIPPED_NAMED, skipped_rows

#: What the zombie calls itself: told apart from this interpreter's name.
ZOMBIE_NAME = "kcmp-zombie"


@contextlib.contextmanager
def named_zombie(name: bytes) -> Iterator[int]:
    """A child that renamed itself ``name`` (/proc/self/comm), then exited and stays
    unreaped for the block. ``waitid(WNOWAIT)`` returns once it is a zombie."""
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            with open("/proc/self/comm", "wb") as comm:
                comm.write(name)
        finally:
            os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        yield pid
    finally:
        os.waitpid(pid, 0)


def _commands(me: int, zombie: int, gone: int) -> dict[str, list[str]]:
    pids = f"{me},{zombie},{gone}"
    return {
        "scan": ["scan", "-p", pids],
        "holders": ["holders", str(me), "0", "-p", pids],
        "who": ["who", os.devnull, "-p", pids],
    }


@pytest.mark.parametrize("name", ["scan", "holders", "who"])
def test_a_table_names_each_skipped_process_with_its_command_and_reason(name: str) -> None:
    me = os.getpid()
    gone = missing_pid()
    with named_zombie(ZOMBIE_NAME.encode()) as zombie:
        done = run_cli(*_commands(me, zombie, gone)[name])
    assert done.returncode == 0, done.stderr
    table, skipped, more = split_skipped(done.stdout.decode())
    # In the report's order (ascending pid); no name is read for a pid gone.
    assert skipped == [(zombie, ZOMBIE_NAME, "zombie"), (gone, "?", "no such process")]
    assert more == ""
    assert table.endswith("2 skipped\n") or "2 processes skipped" in table, table
    # Given by -p, they are also noted on stderr, in the words of a single failure.
    assert done.stderr.decode() == (
        f"kcmp-rs: process {zombie} has exited and awaits reaping (a zombie)\n"
        f"kcmp-rs: process {gone} does not exist\n"
    )


@pytest.mark.parametrize("name", ["scan", "holders", "who"])
def test_a_table_with_nothing_skipped_has_no_skipped_rows(name: str) -> None:
    me = os.getpid()
    args = {
        "scan": ["scan", "-p", str(me)],
        "holders": ["holders", str(me), "0", "-p", str(me)],
        "who": ["who", os.devnull, "-p", str(me)],
    }[name]
    done = run_cli(*args)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert "SKIPPED" not in done.stdout.decode()
    assert split_skipped(done.stdout.decode())[1:] == ([], "")


def _many_missing(extra: int) -> list[int]:
    first = missing_pid()  # above pid_max: no process can have any of them
    return [first + n for n in range(SKIPPED_NAMED + extra)]


@pytest.mark.parametrize("name", ["scan", "holders", "who"])
def test_the_named_processes_are_bounded_and_the_rest_counted(name: str) -> None:
    me = os.getpid()
    gone = _many_missing(3)
    pids = ",".join(map(str, [me, *gone]))
    args = {
        "scan": ["scan", "-p", pids],
        "holders": ["holders", str(me), "0", "-p", pids],
        "who": ["who", os.devnull, "-p", pids],
    }[name]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    _, skipped, more = split_skipped(done.stdout.decode())
    assert skipped == [(pid, "?", "no such process") for pid in gone[:SKIPPED_NAMED]]
    assert more == "... and 3 more; -J lists every one"
    notes = done.stderr.decode().splitlines()
    assert notes == [
        *(f"kcmp-rs: process {pid} does not exist" for pid in gone[:SKIPPED_NAMED]),
        "kcmp-rs: ... and 3 more; -J lists every one",
    ]
    assert all(len(line) <= 120 for line in done.stdout.decode().splitlines())
    # -J does list every one; stderr still names the first few only.
    whole = run_cli(*args, "-J")
    assert whole.returncode == 0
    doc = json.loads(whole.stdout)
    assert [(s["pid"], s["reason"]) for s in doc["skipped"]] == [
        (pid, "no such process") for pid in gone
    ]
    assert whole.stderr == done.stderr


def test_exactly_the_bound_is_named_without_a_count_line() -> None:
    gone = _many_missing(0)
    done = run_cli("scan", "-p", ",".join(map(str, gone)))
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == "kcmp-rs: no process could be read"
    _, skipped, more = split_skipped(done.stdout.decode())
    assert [pid for pid, _, _ in skipped] == gone and more == ""


def test_a_dot_graph_leaves_the_named_processes_to_stderr() -> None:
    me = os.getpid()
    gone = _many_missing(1)
    done = run_cli("scan", "-p", ",".join(map(str, [me, *gone])), "--dot")
    assert done.returncode == 0
    assert "SKIPPED" not in done.stdout.decode() and done.stdout.startswith(b"digraph ")
    notes = done.stderr.decode().splitlines()
    assert len(notes) == SKIPPED_NAMED + 1
    assert notes[-1] == "kcmp-rs: ... and 1 more; -J lists every one"


def test_skipped_rows_escape_names_and_fit_120_columns() -> None:
    hostile = "x\x1b[31m" + "y" * 200
    reason = "error: " + "a very long reason " * 10
    text = skipped_rows([(4194304, reason), (7, "zombie")], {7: hostile, 4194304: "\n"})
    lines = text.splitlines()
    assert lines[0].split() == ["SKIPPED", "COMMAND", "REASON"]
    assert all(len(line) <= 120 for line in lines), [len(line) for line in lines]
    assert lines[1].startswith("4194304  \\n ") and lines[1].endswith("...")
    assert lines[2].startswith("7        x\\x1b[31myyy") and "..." in lines[2]
    assert "\x1b" not in text
    assert skipped_rows([], {}) == ""
    many = [(n, "exited") for n in range(1, 30)]
    assert skipped_rows(many, {}).splitlines()[-1] == "... and 19 more; -J lists every one"
    assert len(skipped_rows(many, {}, limit=2).splitlines()) == 4
