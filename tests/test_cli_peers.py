"""``kcmp-rs peers PID FD``: the table, -J and -j, and every way it can fail."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import kcmp_rs
from _checks import needs_kcmp, needs_seccomp
from _helpers import Spawn, run_in_child
from _scan_helpers import missing_pid, parse_table, run_cli
from _seccomp import install_filter


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
        # Holders come in (pid, fd) order, whichever of the two pids is smaller.
        assert got == [
            (["read"], ["r"], sorted([(me, r), (child.pid, r)])),
            (["read"], ["r"], sorted([(me, again), (child.pid, again)])),
            (["write"], ["w"], sorted([(me, w), (child.pid, w)])),
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


@needs_kcmp
@needs_seccomp
def test_where_sock_diag_is_refused_the_peer_is_said_missing_status_4() -> None:
    """A seccomp filter refusing netlink sockets, as a sandbox's may: the socket's own
    end, status 4, and a note saying the peer cannot be read; a listener (which has no
    peer, as /proc/PID/net/unix tells) stays complete."""
    me = os.getpid()
    a, b = socket.socketpair()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"\0kcmp-rs-cli-peers-{me}")
    listener.listen(1)
    try:
        refused = partial(install_filter, ("allow",), netlink_errno=errno.EPERM)
        for fd, status, note in [
            (
                a.fileno(),
                4,
                "kcmp-rs: incomplete: sock_diag is refused here (Operation not "
                "permitted): the socket's peer cannot be read\n",
            ),
            (listener.fileno(), 0, ""),
        ]:
            done = subprocess.run(
                [sys.executable, "-m", "kcmp_rs", "peers", str(me), str(fd), "-p", str(me)],
                capture_output=True,
                text=True,
                preexec_fn=refused,
                check=False,
            )
            assert (done.returncode, done.stderr) == (status, note)
            rows, _ = parse_table("\n".join(done.stdout.splitlines()[1:-1]) + "\n")
            assert [(r["SIDE"], refs(r["HOLDERS"])) for r in rows] == [(["socket"], [(me, fd)])]
    finally:
        for s in (a, b, listener):
            s.close()


def _own_ends_without_kcmp(r: int) -> tuple[list[tuple[str, list[list[int]]]], int]:
    kcmp_rs.disable_kcmp()  # in the forked child alone
    me = os.getpid()
    found = kcmp_rs.endpoints(me, r, [me])
    ends = [(e.side, [[m.fd for m in d.members] for d in e.descriptions]) for e in found.ends]
    return ends, len(found.undecided)


def test_without_kcmp_own_fds_are_decided_and_others_undecided(spawn: Spawn) -> None:
    """Without kcmp, as containers run: a process's own fds go through the exact
    fallbacks; another process's fds on the pipe stay undecided (the command: status 4,
    naming why)."""
    me = os.getpid()
    r, w = os.pipe()
    try:
        ends, undecided = run_in_child(_own_ends_without_kcmp, r).unwrap()
        assert (ends, undecided) == ([("read", [[r]]), ("write", [[w]])], 0)
        env = {"KCMP_RS_NO_KCMP": "1"}
        done = run_cli("peers", str(me), str(r), "-p", str(me), env=env)
        assert done.returncode == 4
        head = done.stdout.decode().splitlines()[0]
        assert head.endswith(f"pipe pipe:[{os.fstat(r).st_ino}], its description undecided")
        assert b"kcmp(2) is disabled by configuration" in done.stderr
        done = run_cli("peers", str(me), str(r), "-p", str(me), "-J", env=env)
        undecided_fds = {(u["pid"], u["fd"]) for u in json.loads(done.stdout)["undecided"]}
        assert {(me, r), (me, w)} <= undecided_fds
    finally:
        os.close(r)
        os.close(w)
