"""``kcmp-rs peers PID FD``: the table, -J and -j, and every way it can fail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import kcmp_rs
from _checks import needs_kcmp
from _helpers import Spawn
from _scan_helpers import missing_pid, parse_table, run_cli


def peers(*args: object) -> tuple[int, str, str]:
    done = run_cli("peers", *map(str, args))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def refs(holders: list[str]) -> list[tuple[int, int]]:
    """``PID,COMMAND,FD`` cells as (pid, fd)."""
    return [(int(h.split(",")[0]), int(h.rsplit(",", 1)[1])) for h in holders]


@needs_kcmp
def test_the_table_has_a_row_per_description_and_a_summary(spawn: Spawn) -> None:
    me = os.getpid()
    r, w = os.pipe()
    again = os.open(f"/proc/self/fd/{r}", os.O_RDONLY)
    try:
        child = spawn()
        status, out, err = peers(me, w, "-p", f"{me},{child.pid}")
        assert (status, err) == (0, "")
        head, *table, summary = out.splitlines()
        assert head == f"fd {w} of process {me}: pipe pipe:[{os.fstat(r).st_ino}], the write side"
        rows, rest = parse_table("\n".join(table) + "\n")
        assert rest == []
        got = [(row["SIDE"], row["MODE"], refs(row["HOLDERS"])) for row in rows]
        assert got == [
            (["read"], ["r"], [(me, r), (child.pid, r)]),
            (["read"], ["r"], [(me, again), (child.pid, again)]),
            (["write"], ["w"], [(me, w), (child.pid, w)]),
        ]
        assert summary == (
            "2 ends, 3 descriptions in 2 processes; 5 peer fds; 2 processes read, 0 skipped"
        )
    finally:
        for fd in (r, w, again):
            os.close(fd)


@needs_kcmp
def test_json_is_to_dict_and_json_lines_carry_every_end() -> None:
    me = os.getpid()
    r, w = os.pipe()
    try:
        status, out, err = peers(me, r, "-p", me, "-J")
        assert (status, err) == (0, "")
        doc = json.loads(out)
        assert doc == kcmp_rs.endpoints(me, r, [me]).to_dict()
        status, out, err = peers(me, r, "-p", me, "-j")
        records = [json.loads(line) for line in out.splitlines()]
        assert [x["record"] for x in records] == ["header", "end", "end", "peer", "summary"]
        assert records[0]["command"] == "peers"
        assert [x["side"] for x in records[1:3]] == ["read", "write"]
        assert (records[3]["pid"], records[3]["fd"]) == (me, w)
        assert records[-1]["sides"] == ["read"] and records[-1]["kind"] == "pipe"
    finally:
        os.close(r)
        os.close(w)


def test_an_fd_that_is_no_channel_is_status_1_naming_its_type(tmp_path: Path) -> None:
    me = os.getpid()
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        status, out, err = peers(me, fd, "-p", me)
        assert (status, out) == (1, "")
        assert err == (
            f"kcmp-rs: fd {fd} of process {me} is a directory ({tmp_path}), not an end of a "
            "pipe, FIFO, Unix socket, pty or eventfd\n"
        )
    finally:
        os.close(fd)


def test_a_closed_fd_a_missing_process_and_bad_arguments() -> None:
    me = os.getpid()
    closed = os.dup2(0, 4000)  # a number the command's own pipes will not reuse
    os.close(closed)
    status, _, err = peers(me, closed, "-p", me)
    assert (status, err) == (1, f"kcmp-rs: fd {closed} is not open in process {me}\n")
    gone = missing_pid()
    status, _, err = peers(gone, 0)
    assert (status, err) == (1, f"kcmp-rs: process {gone} does not exist\n")
    status, _, err = peers(me, "x")
    assert status == 2 and "usage: kcmp-rs peers" in err and "not an fd: 'x'" in err
    status, _, err = peers(me, 0, "--bogus")
    assert status == 2 and err.startswith("usage: kcmp-rs peers")


@needs_kcmp
def test_a_skipped_process_is_named_and_the_answer_goes_on() -> None:
    me = os.getpid()
    gone = missing_pid()
    r, w = os.pipe()
    try:
        status, out, err = peers(me, r, "-p", f"{me},{gone}")
        assert status == 0
        assert err == f"kcmp-rs: process {gone} does not exist\n"
        lines = out.splitlines()
        assert lines[-2].split() == ["SKIPPED", "COMMAND", "REASON"]
        assert lines[-1].split() == [str(gone), "?", "no", "such", "process"]
        assert lines[-3].endswith("1 process read, 1 skipped")
    finally:
        os.close(r)
        os.close(w)
