"""The boundary audit: ``scan(boundary=KIND)`` and ``kcmp-rs scan --across KIND`` on
real boundaries built by processes the tests start (new pid, mount, network and user
namespaces through unshare(2); a cgroup v2 group created for the test), with
descriptions inherited through fork and passed over a Unix socket. The truth is
computed independently: every pair of fds compared by the ctypes baseline, each
holder's namespace read with readlink."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kcmp_rs
import pytest
from _helpers import fork, keep_only, libc, new_cgroup, own_cgroup, pairwise_groups
from _scan_helpers import (
    SCAN_RECORDS,
    check_scan_document,
    from_json_lines,
    missing_pid,
    run_cli,
    scan_table_rows,
    shared_refs,
)
from kcmp_rs import Scan
from kcmp_rs._boundary import KINDS, Boundaries, in_cgroup

Ref = tuple[int, int]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1

#: Each holder's command name (comm), so that rules and tables can name it.
COMMANDS = {"pid": "kb-pidns", "net": "kb-netns", "mnt": "kb-mntns", "user": "kb-userns"}
FLAGS = {"pid": CLONE_NEWPID, "net": CLONE_NEWNET, "mnt": CLONE_NEWNS, "user": CLONE_NEWUSER}


# ---- holders: processes in their own namespaces ----


@dataclass
class Holder:
    """A process the test started, in the namespaces ``unshare`` gave it; ``pid`` as
    this process sees it, ``fds``: what its setup reported."""

    pid: int
    fds: dict[str, int]
    killed: bool = False  # the test killed it: SIGKILL is then the expected end


def _hold(command: str, setup: Callable[[], dict[str, int]], report_w: int, control_r: int) -> None:
    """A holder's life: set up, keep only its fds, report, wait for the release."""
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    fds = setup()
    keep_only({report_w, control_r, *fds.values()})
    with open("/proc/self/comm", "w") as f:
        f.write(command)
    me = int(os.readlink("/proc/self"))  # our pid in /proc's namespace, not in a new one
    os.write(report_w, json.dumps({"pid": me, "fds": fds}).encode())
    os.close(report_w)
    while os.read(control_r, 1):
        pass


def _holder_main(flags: int, command: str, setup: Callable[[], dict[str, int]],
                 report_w: int, control_r: int) -> None:  # fmt: skip
    """The forked child: unshare, then hold (in a new pid namespace only its child can
    be in it: that child holds, and this one waits for it and reaps it)."""
    code = 1
    try:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if flags and libc.unshare(flags) != 0:
            raise OSError(ctypes.get_errno(), "unshare failed")
        if flags & CLONE_NEWPID:
            inner = os.fork()
            if inner == 0:
                _hold(command, setup, report_w, control_r)
                os._exit(0)
            keep_only(set())
            _, status = os.waitpid(inner, 0)
            code = 0 if status == 0 else 1
        else:
            _hold(command, setup, report_w, control_r)
            code = 0
    except BaseException:
        code = 1
    os._exit(code)


@contextlib.contextmanager
def holder(
    flags: int, command: str, setup: Callable[[], dict[str, int]] = dict
) -> Iterator[Holder]:
    """A holder in new namespaces (``flags``: CLONE_NEW*), running ``setup`` (which
    returns the fds it keeps by name); released, reaped and its exit checked at the end."""
    report_r, report_w = os.pipe()
    control_r, control_w = os.pipe()
    held = Holder(0, {})
    pid = fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(report_r)
        os.close(control_w)
        _holder_main(flags, command, setup, report_w, control_r)
    os.close(report_w)
    os.close(control_r)
    try:
        with os.fdopen(report_r, "rb") as f:
            raw = f.read()
        assert raw, f"holder {pid} ({command}) failed before reporting"
        data = json.loads(raw)
        held = Holder(data["pid"], data["fds"])
        yield held
    finally:
        os.close(control_w)
        deadline = time.monotonic() + 30
        status = None
        while status is None:
            got, st = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                status = st
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                status = os.waitpid(pid, 0)[1]
            else:
                time.sleep(0.005)
    expected = -signal.SIGKILL if held.killed else 0
    assert os.waitstatus_to_exitcode(status) == expected, f"holder {pid} ended with {status:#x}"


@dataclass
class World:
    """Holders in a new pid, net, mnt and user namespace each plus one in none
    (``plain``); all inherited the read end of one pipe through fork (``inherited``);
    ``net`` and ``plain`` received one file over Unix sockets (``passed``)."""

    holders: dict[str, Holder]
    passed: str

    @property
    def pids(self) -> list[int]:
        return sorted(h.pid for h in self.holders.values())


def _receiver(sock: int, pipe_r: int) -> Callable[[], dict[str, int]]:
    def setup() -> dict[str, int]:
        with socket.socket(fileno=sock) as s:
            _, (passed,), _, _ = socket.recv_fds(s, 1, 1)
        return {"inherited": pipe_r, "passed": passed}

    return setup


@pytest.fixture
def world() -> Iterator[World]:
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="kcmp-boundary-"))
        passed = os.path.join(directory, "passed")
        pipe_r, pipe_w = os.pipe()
        stack.callback(os.close, pipe_w)
        stack.callback(os.close, pipe_r)
        one_open = os.open(passed, os.O_RDWR | os.O_CREAT, 0o600)
        stack.callback(os.close, one_open)
        holders = {}
        for kind in ("plain", *FLAGS):
            ours, theirs = socket.socketpair()
            with ours, theirs:
                if kind in ("plain", "net"):
                    socket.send_fds(ours, [b"x"], [one_open])
                    setup = _receiver(theirs.fileno(), pipe_r)
                else:
                    setup = lambda: {"inherited": pipe_r}  # noqa: E731
                command = COMMANDS.get(kind, "kb-plain")
                holders[kind] = stack.enter_context(holder(FLAGS.get(kind, 0), command, setup))
        yield World(holders, passed)


# ---- the truth, computed without the package ----


def truth(pids: list[int], kind: str) -> list[tuple[tuple[Ref, ...], tuple[str, ...]]]:
    """Every description held by 2+ fds of ``pids`` (every pair asked through the
    ctypes baseline) with its holders' distinct values of ``kind`` (readlink)."""
    refs = [(p, int(n)) for p in pids for n in sorted(os.listdir(f"/proc/{p}/fd"), key=int)]
    groups = [g for g in pairwise_groups(refs) if len(g) > 1]
    side = {p: os.readlink(f"/proc/{p}/ns/{kind}") for p in pids}
    return [(g, tuple(sorted({side[p] for p, _ in g}))) for g in groups]


def found(result: Scan) -> list[tuple[tuple[Ref, ...], tuple[str, ...]]]:
    return sorted(
        (tuple((m.pid, m.fd) for m in d.members), d.boundaries) for d in result.descriptions
    )


def crossings(pairs: list[tuple[tuple[Ref, ...], tuple[str, ...]]]) -> list[tuple[Ref, ...]]:
    return sorted(g for g, sides in pairs if len(sides) > 1)


# ---- the API ----


@pytest.mark.parametrize("kind", ["pid", "net", "mnt", "user", "ipc", "uts"])
def test_scan_reports_each_descriptions_sides_as_the_truth(world: World, kind: str) -> None:
    result = kcmp_rs.scan(world.pids, boundary=kind)
    assert result.skipped == ()
    assert found(result) == sorted(truth(world.pids, kind))
    for d in result.descriptions:
        for m in d.members:
            assert m.boundary == os.readlink(f"/proc/{m.pid}/ns/{kind}")
    inherited = {(h.pid, h.fds["inherited"]) for h in world.holders.values()}
    (pipe,) = [d for d in result.descriptions if {(m.pid, m.fd) for m in d.members} == inherited]
    host = os.readlink(f"/proc/self/ns/{kind}")
    own = {os.readlink(f"/proc/{h.pid}/ns/{kind}") for h in world.holders.values()} - {host}
    assert pipe.boundaries == tuple(sorted({host} | own))
    # ipc and uts: no holder left them, so nothing crosses; the others cross exactly once
    # per holder that did.
    assert len(own) == (1 if kind in FLAGS else 0)


def test_a_description_passed_over_a_socket_crosses_only_the_boundary_between_them(
    world: World,
) -> None:
    net, plain = world.holders["net"], world.holders["plain"]
    refs = ((plain.pid, plain.fds["passed"]), (net.pid, net.fds["passed"]))
    for kind, crosses in [("net", True), ("pid", False), ("mnt", False), ("user", False)]:
        result = kcmp_rs.scan(world.pids, boundary=kind)
        (d,) = [d for d in result.descriptions if d.target == world.passed]
        assert tuple(sorted((m.pid, m.fd) for m in d.members)) == tuple(sorted(refs))
        assert (len(d.boundaries) > 1) is crosses, (kind, d.boundaries)


def test_without_a_boundary_nothing_gains_a_side(world: World) -> None:
    result = kcmp_rs.scan(world.pids)
    assert result.descriptions
    for d in result.descriptions:
        assert d.boundaries == ()
        assert "boundaries" not in d.to_dict()
        assert all(m.boundary is None and "boundary" not in m.to_dict() for m in d.members)


def test_a_process_whose_boundary_cannot_be_read_is_skipped_never_sided(world: World) -> None:
    victim = world.holders["mnt"]  # this process's own child: a zombie once killed
    victim.killed = True

    def kill_after_listing(done: int, total: int) -> None:
        if done == total:  # every fd listed; the boundaries are read next
            os.kill(victim.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not _is_zombie(victim.pid) and time.monotonic() < deadline:
                time.sleep(0.001)

    result = kcmp_rs.scan(world.pids, boundary="net", progress=kill_after_listing)
    # "zombie", not "exited": the boundary stage saw it before classification could.
    assert [(s.pid, s.reason) for s in result.skipped] == [(victim.pid, "zombie")]
    assert all(m.pid != victim.pid for d in result.descriptions for m in d.members)
    alive = [p for p in world.pids if p != victim.pid]
    assert found(result) == sorted(truth(alive, "net"))


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()[0] == b"Z"


def test_boundaries_raise_for_a_process_that_does_not_exist() -> None:
    pid = missing_pid()
    for kind in ("net", "cgroup"):
        with pytest.raises(kcmp_rs.ProcessGoneError) as info:
            Boundaries(kind).value(pid)
        assert info.value.pid == pid and info.value.kind == "absent"
        assert str(info.value) == f"[Errno 3] No such process: process {pid} does not exist"


@pytest.mark.parametrize(
    ("value", "cls", "message"),
    [
        ("x", ValueError, "boundary must be one of 'pid', 'mnt', 'net', 'user', 'ipc', 'uts', "
         "'cgroup' or None, got 'x'"),
        ("NET", ValueError, "boundary must be one of 'pid', 'mnt', 'net', 'user', 'ipc', "
         "'uts', 'cgroup' or None, got 'NET'"),
        (5, TypeError, "boundary must be a str or None, not int"),
        (b"net", TypeError, "boundary must be a str or None, not bytes"),
    ],
)  # fmt: skip
def test_a_bad_boundary_is_refused_before_any_work(value: Any, cls: type, message: str) -> None:
    # A pid that does not exist would be skipped, not raised: the refusal comes first.
    with pytest.raises(cls) as info:
        kcmp_rs.scan([missing_pid()], boundary=value)
    assert type(info.value) is cls
    assert str(info.value) == message


def test_cgroup_paths_contain_their_subgroups() -> None:
    # The values themselves (v2, hybrid, v1 texts) are the Rust room's unit tests.
    assert in_cgroup("/system.slice/docker-1.scope", "/system.slice")
    assert in_cgroup("/system.slice", "/system.slice/")
    assert not in_cgroup("/system.slice2", "/system.slice")
    assert in_cgroup("cpu,cpuacct:/a;memory:/b/c", "/b")
    assert not in_cgroup("cpu,cpuacct:/a;memory:/b/c", "/c")
    assert KINDS == ("pid", "mnt", "net", "user", "ipc", "uts", "cgroup")


# ---- a cgroup created for the test ----


@pytest.fixture
def test_cgroup() -> Iterator[tuple[str, str]]:
    """``(directory, path as /proc/PID/cgroup shows it)`` of a new cgroup v2 group under
    this process's own; removed at the end. Skips where the hierarchy is not writable."""
    with new_cgroup(f"kcmp-rs-test-{os.getpid()}") as made:
        yield made


def test_cgroup_crossings_and_inside(world: World, test_cgroup: tuple[str, str]) -> None:
    directory, path = test_cgroup
    moved = world.holders["net"]
    with open(os.path.join(directory, "cgroup.procs"), "w") as f:
        f.write(str(moved.pid))
    try:
        result = kcmp_rs.scan(world.pids, boundary="cgroup")
        own = own_cgroup() or "?"
        for d in result.descriptions:
            holders = {m.pid for m in d.members}
            expect = {path if p == moved.pid else own for p in holders}
            assert d.boundaries == tuple(sorted(expect))
        crossed = [d for d in result.descriptions if len(d.boundaries) > 1]
        assert {d.target for d in crossed} >= {world.passed}
        proc = run_cli("scan", "--across", "cgroup", "--inside", path, "-J",
                       "-p", ",".join(map(str, world.pids)))  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        doc = json.loads(proc.stdout)
        check_scan_document(doc)
        listed = [[m["pid"] for m in d["members"]] for d in doc["descriptions"]]
        assert listed and all(moved.pid in pids for pids in listed)
        assert len(doc["descriptions"]) == len(crossed)
    finally:
        with open(os.path.join(os.path.dirname(directory), "cgroup.procs"), "w") as f:
            f.write(str(moved.pid))


# ---- the command ----


def _cli(world: World, *args: str) -> tuple[int, str, str]:
    proc = run_cli("scan", "-p", ",".join(map(str, world.pids)), *args)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_across_lists_exactly_the_crossings_and_exits_3(world: World) -> None:
    status, out, err = _cli(world, "--across", "net")
    assert status == 3, err
    assert err == ""
    rows, summary = scan_table_rows(out)
    expect = crossings(truth(world.pids, "net"))
    assert sorted(shared_refs(r["SHARED"]) for r in rows) == expect
    n = len(expect)
    assert summary.endswith(f"; {n} crossings across net (0 allowed)"), summary
    for row in rows:
        sides = [os.readlink(f"/proc/{p}/ns/net") for p, _ in shared_refs(row["SHARED"])]
        assert row["BOUNDARY"] == sides


def test_across_exits_0_when_nothing_crosses(world: World) -> None:
    # ipc: every holder kept this process's ipc namespace.
    status, out, err = _cli(world, "--across", "ipc")
    assert (status, err) == (0, "")
    rows, summary = scan_table_rows(out)
    assert rows == []
    assert summary.endswith("; 0 crossings across ipc (0 allowed)"), summary


def test_allow_rules_count_and_silence_expected_crossings(world: World) -> None:
    expect = crossings(truth(world.pids, "net"))
    assert len(expect) == 2  # the inherited pipe and the passed file
    status, out, _ = _cli(world, "--across", "net", "--allow", "type=FIFO")
    assert status == 3
    rows, summary = scan_table_rows(out)
    assert [r["TARGET"] for r in rows] == [[world.passed]]
    assert summary.endswith("; 2 crossings across net (1 allowed)"), summary
    status, out, _ = _cli(world, "--across", "net", "--allow", "type=FIFO",
                          "--allow", f"target={os.path.dirname(world.passed)}/*")  # fmt: skip
    assert status == 0
    rows, summary = scan_table_rows(out)
    assert rows == []
    assert summary.endswith("; 2 crossings across net (2 allowed)"), summary


def test_a_command_rule_allows_when_any_holder_matches(world: World) -> None:
    # Both crossings hold kb-netns and kb-plain: a rule naming one holder is enough.
    status, out, _ = _cli(world, "--across", "net", "--allow", "command=kb-net*")
    assert status == 0
    assert scan_table_rows(out)[1].endswith("(2 allowed)")
    status, out, _ = _cli(world, "--across", "net", "--allow", "command=nothing-holds-it")
    assert status == 3
    assert scan_table_rows(out)[1].endswith("(0 allowed)")


def test_inside_a_pid_keeps_the_crossings_of_its_side(world: World) -> None:
    user = world.holders["user"]
    status, out, err = _cli(world, "--across", "user", "--inside", str(user.pid), "-J")
    assert status == 3, err
    doc = json.loads(out)
    check_scan_document(doc)
    side = os.readlink(f"/proc/{user.pid}/ns/user")
    assert doc["descriptions"]
    for d in doc["descriptions"]:
        assert side in d["boundaries"]
        assert [m["boundary"] for m in d["members"]] == [
            os.readlink(f"/proc/{m['pid']}/ns/user") for m in d["members"]
        ]
    # The passed file never reached the user namespace: not a crossing of that side.
    assert world.passed not in [d["target"] for d in doc["descriptions"]]


def test_json_lines_carry_the_boundaries(world: World) -> None:
    status, out, _ = _cli(world, "--across", "pid", "-j")
    assert status == 3
    doc = from_json_lines(out, "scan", SCAN_RECORDS)
    check_scan_document(doc)
    got = sorted(tuple((m["pid"], m["fd"]) for m in d["members"]) for d in doc["descriptions"])
    assert got == crossings(truth(world.pids, "pid"))


def test_audit_json_from_the_core_is_the_python_document_byte_for_byte(world: World) -> None:
    """The audit's JSON is written by the core from the report, with the crossings it
    keeps: the same bytes as the Python path (stdout without an fd), allowed crossings
    left out of both."""
    import contextlib
    import io

    from kcmp_rs import cli

    for form in ("-J", "-j"):
        args = ["--across", "net", "--allow", "type=FIFO", form]
        status, native, err = _cli(world, *args)
        captured = io.StringIO()  # no fileno: the Python path
        with contextlib.redirect_stdout(captured):
            python_status = cli.main(["scan", "-p", ",".join(map(str, world.pids)), *args])
        assert (status, python_status) == (3, 3), err
        assert native == captured.getvalue(), form
        assert world.passed in native and '"FIFO"' not in native


def test_plain_scan_json_has_no_boundary_fields(world: World) -> None:
    status, out, _ = _cli(world, "-J")
    assert status == 0
    doc = json.loads(out)
    check_scan_document(doc)
    assert doc["descriptions"]
    assert all("boundaries" not in d for d in doc["descriptions"])
    assert all("boundary" not in m for d in doc["descriptions"] for m in d["members"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inside", "1"], "--inside and --allow need --across KIND"),
        (["--allow", "type=FIFO"], "--inside and --allow need --across KIND"),
        (["--across", "net", "--allow", "owner=x"], "argument --allow: a rule is FIELD=PATTERN "
         "with FIELD one of command, target, type, got 'owner=x'"),
        (["--across", "net", "--allow", "type="], "argument --allow: a rule is FIELD=PATTERN "
         "with FIELD one of command, target, type, got 'type='"),
        (["--across", "net", "--inside", "web"], "argument --inside: not a process id or a "
         "cgroup path (starting with /): 'web'"),
        (["--across", "time"], "argument --across: invalid choice: 'time'"),
    ],
)  # fmt: skip
def test_audit_usage_errors(args: list[str], message: str) -> None:
    proc = run_cli("scan", "-p", str(os.getpid()), *args)
    assert proc.returncode == 2
    assert message in proc.stderr.decode()


def test_across_takes_no_example() -> None:
    proc = run_cli("scan", "--example", "--across", "net")
    assert proc.returncode == 2
    assert "--across audits the processes given: it takes no --example" in proc.stderr.decode()


def test_inside_a_pid_that_does_not_exist_is_status_1() -> None:
    gone = missing_pid()
    proc = run_cli("scan", "-p", str(os.getpid()), "--across", "net", "--inside", str(gone))
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"kcmp-rs: --inside: cannot read the net boundary of process {gone}: "
        f"process {gone} does not exist\n"
    )
    assert proc.stdout == b""


def test_with_kcmp_blocked_undecided_is_4_and_a_crossing_decided_is_3(world: World) -> None:
    # Without kcmp, another process's fds on one inode stay undecided unless copied
    # (pidfd_getfd): nothing crosses for certain, and the answer is incomplete.
    env = {"KCMP_RS_NO_KCMP": "1"}
    pids = ",".join(map(str, world.pids))
    proc = run_cli("scan", "-p", pids, "--across", "net", env=env)
    assert proc.returncode == 4, proc.stderr
    assert "incomplete answer" in proc.stderr.decode()
    assert scan_table_rows(proc.stdout.decode())[1].endswith("; 0 crossings across net (0 allowed)")
    proc = run_cli("scan", "-p", pids, "--across", "net", "--allow-pidfd-getfd", env=env)
    assert proc.returncode == 3, proc.stderr
    rows, summary = scan_table_rows(proc.stdout.decode())
    assert sorted(shared_refs(r["SHARED"]) for r in rows) == crossings(truth(world.pids, "net"))
    assert "undecided" not in summary
