"""The ``kcmp-rs`` command, run as ``python -m kcmp_rs`` on processes the tests start:
every subcommand and output mode, exit statuses, usage errors, hostile names."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _family import HOSTILE_NAME, Family, build_family
from _helpers import NOBODY, OTHER_UID, drop_privileges, run_in_child
from _scan_helpers import (
    SCAN_RECORDS,
    check_scan_document,
    doc_groups,
    from_json_lines,
    missing_pid,
    parse_table,
    run_cli,
    scan_table_rows,
    shared_refs,
    split_skipped,
)
from conftest import Spawn
from kcmp_rs import cli
from kcmp_rs.cli import _io as _cli_io

N_PROCS = 6
FDS_PER_PROC = 12


@pytest.fixture
def family() -> Iterator[Family]:
    with build_family(N_PROCS, FDS_PER_PROC) as fam:
        yield fam


def pid_list(family: Family) -> str:
    return ",".join(map(str, family.pids))


# ---- help, version, usage errors ----


@pytest.mark.parametrize(
    ("args", "example"),
    [
        ([], "kcmp-rs scan --example"),
        (["demo"], "kcmp-rs demo"),
        (["fds"], "kcmp-rs fds 1234"),
        (["share"], "kcmp-rs share 1234 1240"),
        (["scan"], "kcmp-rs scan -p 1234,1240"),
    ],
)
def test_help_has_an_example(args: list[str], example: str) -> None:
    done = run_cli(*args, "--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.startswith("usage: kcmp-rs")
    assert "example" in out and example in out
    assert done.stderr == b""


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.decode() == f"kcmp-rs {kcmp_rs.__version__}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["fds"], "the following arguments are required: PID"),
        (["fds", "abc"], "argument PID: not a process id: 'abc'"),
        (["fds", "0"], "not a process id: '0'"),
        (["fds", "-5"], "not a process id: '-5'"),
        (["fds", "1_000"], "not a process id: '1_000'"),
        (["fds", "99999999999"], "not a process id: '99999999999'"),
        (["share", "12"], "the following arguments are required: PID2"),
        (["share", "12", "x"], "argument PID2: not a process id: 'x'"),
        (["scan", "-p"], "argument -p/--pid: expected one argument"),
        (["scan", "-p", "12,x"], "not a process id: 'x'"),
        (["scan", "-p", "12,"], "not a process id: ''"),
        (["scan", "--bogus"], "unrecognized arguments: --bogus"),
        (["scan", "-J", "-j"], "not allowed with argument"),
        (["scan", "--example", "-p", "12"], "--example scans its own processes"),
        (["demo", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = run_cli(*args)
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "usage: kcmp-rs" in err
    assert message in err
    assert done.stdout == b""


@pytest.mark.parametrize(
    "args",
    [
        ["epoll", "12", "-J", "--dot"],
        ["share", "12", "13", "--bogus"],
        ["holders", "12", "3", "extra", "-J"],
        ["scan", "--bogus"],
        ["demo", "extra"],
    ],
)
def test_an_unknown_argument_is_said_with_its_subcommand_s_usage(args: list[str]) -> None:
    done = run_cli(*args)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b"", err
    name = args[0]
    assert err.startswith(f"usage: kcmp-rs {name} "), err
    unknown = " ".join(a for a in args[1:] if a in ("--dot", "--bogus", "extra"))
    assert err.endswith(f"kcmp-rs {name}: error: unrecognized arguments: {unknown}\n"), err


def test_missing_process_exits_1(spawn: Spawn) -> None:
    gone = missing_pid()
    alive = spawn().pid
    for args in (
        ["fds", str(gone)],
        ["share", str(gone), str(alive)],
        ["share", str(alive), str(gone)],
    ):
        for env in ({}, {"KCMP_RS_NO_KCMP": "1"}):  # the fd listing names it even then
            done = run_cli(*args, env=env)
            assert done.returncode == 1, args
            assert done.stderr.decode() == f"kcmp-rs: process {gone} does not exist\n", args
            assert done.stdout == b""
    for env in ({}, {"KCMP_RS_NO_KCMP": "1"}):  # absent, not "exited", without kcmp too
        done = run_cli("scan", "-p", str(gone), env=env)
        assert done.returncode == 1
        assert done.stderr.decode() == (
            f"kcmp-rs: process {gone} does not exist\nkcmp-rs: no process could be read\n"
        )
        table, skipped, more = split_skipped(done.stdout.decode())
        assert table.endswith("1 process skipped (1 no such process)\n")
        assert skipped == [(gone, "?", "no such process")] and more == ""


def test_zombie_exits_1(spawn: Spawn, zombie: int) -> None:
    alive = spawn().pid
    for args in (["fds", str(zombie)], ["share", str(alive), str(zombie)]):
        done = run_cli(*args)
        assert done.returncode == 1, args
        assert done.stderr.decode().startswith(
            f"kcmp-rs: process {zombie} has exited and awaits reaping (a zombie)"
        ), args
        assert done.stderr.count(b"\n") == 1 and done.stdout == b"", args
    done = run_cli("scan", "-p", str(zombie))
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"kcmp-rs: process {zombie} has exited and awaits reaping (a zombie)\n"
        "kcmp-rs: no process could be read\n"
    )
    # The zombie is this test process's child: its name is this interpreter's.
    command = Path(f"/proc/{zombie}/comm").read_text().rstrip("\n")
    assert split_skipped(done.stdout.decode())[1:] == ([(zombie, command, "zombie")], "")


def _main_as_other_user(args: list[str]) -> tuple[int, str, str]:
    """``kcmp-rs ARGS`` as another unprivileged user, in a forked child: python itself
    may live where that user may not exec it, so it runs in-process."""
    drop_privileges(OTHER_UID)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(args)
    return status, out.getvalue(), err.getvalue()


def _drop_to_nobody() -> None:
    drop_privileges(NOBODY)


def test_permission_denied_exits_1(spawn: Spawn) -> None:
    denier = spawn(_drop_to_nobody).pid
    for args in (["fds", str(denier)], ["share", str(denier), str(denier)]):
        status, out, err = run_in_child(_main_as_other_user, args).unwrap()
        assert status == 1, (args, err)
        assert err == (
            f"kcmp-rs: permission denied for process {denier} "
            "(inspecting it needs the same user, or root / CAP_SYS_PTRACE)\n"
        ), err
        assert out == ""
    status, out, err = run_in_child(_main_as_other_user, ["scan", "-p", str(denier)]).unwrap()
    assert status == 1
    assert f"kcmp-rs: permission denied for process {denier} " in err
    assert err.endswith("kcmp-rs: no process could be read\n")
    table, skipped, _ = split_skipped(out)
    assert table.endswith("0 processes read, 0 fds classified, 0 descriptions shared, "
                          "1 process skipped (1 permission denied)\n")  # fmt: skip
    command = Path(f"/proc/{denier}/comm").read_text().rstrip("\n")  # readable by all
    assert skipped == [(denier, command, "permission denied")], skipped


def test_only_scan_example_imports_the_family_builder(spawn: Spawn) -> None:
    # The builder forks and carries the example's whole machinery: no other command
    # may pay for importing it.
    pid = spawn().pid
    code = (
        "import sys\n"
        "from kcmp_rs import cli\n"
        "for args in sys.argv[1:]:\n"
        "    assert cli.main(args.split()) == 0, args\n"
        "    print('kcmp_rs._example' in sys.modules)\n"
    )
    runs = [f"fds {pid}", f"share {pid} {pid}", f"scan -J -p {pid}", "scan --example -J"]
    done = subprocess.run(
        [sys.executable, "-c", code, *runs], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    flags = [line for line in done.stdout.decode().splitlines() if line in ("True", "False")]
    assert flags == ["False", "False", "False", "True"]


# ---- demo ----

_DEMO = re.compile(
    r"Parent PID is (?P<parent>\d+)\n"
    r"Parent opened file on FD (?P<fd1>\d+)\n"
    r"\n"
    r"PID of child of fork\(\) is (?P<child>\d+)\n"
    r"\tCompare duplicate FDs from different processes:\n"
    r"\t\tkcmp\((?P=child), (?P=parent), KCMP_FILE, (?P=fd1), (?P=fd1)\) ==> (?P<v1>\w+)\n"
    r"Child opened file on FD (?P<fd2>\d+)\n"
    r"\tCompare FDs from distinct open\(\)s in same process:\n"
    r"\t\tkcmp\((?P=child), (?P=child), KCMP_FILE, (?P=fd1), (?P=fd2)\) ==> (?P<v2>\w+)\n"
    r"Child duplicated FD (?P=fd1) to create FD (?P<fd3>\d+)\n"
    r"\tCompare duplicated FDs in same process:\n"
    r"\t\tkcmp\((?P=child), (?P=child), KCMP_FILE, (?P=fd1), (?P=fd3)\) ==> (?P<v3>\w+)\n"
)


def test_demo_reproduces_the_manual_page(tmp_path: Path) -> None:
    done = run_cli("demo", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    match = _DEMO.fullmatch(done.stdout.decode())
    assert match, done.stdout.decode()
    assert (match["v1"], match["v2"], match["v3"]) == ("same", "different", "same")
    assert match["parent"] != match["child"]
    assert len({match["fd1"], match["fd2"], match["fd3"]}) == 3
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone


def test_demo_fails_when_kcmp_is_unavailable(tmp_path: Path) -> None:
    done = run_cli("demo", env={"TMPDIR": str(tmp_path), "KCMP_RS_NO_KCMP": "1"})
    err = done.stderr.decode()
    assert done.returncode == 1, err
    reason = "kcmp(2) is disabled by configuration"
    assert err.startswith(f"kcmp-rs: demo: kcmp(2) is unavailable here: {reason}"), err
    assert err.count("\n") == 1 and done.stdout == b"", (err, done.stdout)
    assert list(tmp_path.iterdir()) == []


# ---- fds, share ----


def _fds_setup() -> dict[str, int]:
    r, w = os.pipe()
    dup = os.dup(w)
    null = os.open(os.devnull, os.O_RDONLY)
    return {"r": r, "w": w, "dup": dup, "null": null}


def test_fds_groups_one_process(spawn: Spawn) -> None:
    child = spawn(_fds_setup)
    fds = child.data
    done = run_cli("fds", str(child.pid))
    assert done.returncode == 0, done.stderr
    rows, rest = parse_table(done.stdout.decode())
    assert rest == []
    by_fds = {row["FDS"][0]: (row["MODE"][0], row["TARGET"][0]) for row in rows}
    assert sorted(int(fd) for cell in by_fds for fd in cell.split(",")) == sorted(
        int(n) for n in os.listdir(f"/proc/{child.pid}/fd")
    )
    mode, target = by_fds[f"{fds['w']},{fds['dup']}"]
    assert mode == "w" and re.fullmatch(r"pipe:\[\d+\]", target)
    mode, target = by_fds[str(fds["r"])]
    assert mode == "r" and re.fullmatch(r"pipe:\[\d+\]", target)
    assert by_fds[str(fds["null"])] == ("r", "/dev/null")


def test_share_two_processes(family: Family) -> None:
    pid1, pid2 = family.pids[:2]  # a pair: they share the lifeline, a file, a passed fd
    done = run_cli("share", str(pid1), str(pid2))
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    first, second, *reopened = done.stdout.decode().split("\n\n")
    rows, _ = parse_table(first)
    shared = {row["RESOURCE"][0]: row["SHARED"][0] for row in rows}
    assert list(shared) == ["VM", "FILES", "FS", "SIGHAND", "IO", "SYSVSEM"]
    # IO and SYSVSEM: two absent contexts compare equal, which is not sharing one.
    assert set(shared.values()) == {"no"}, shared
    notes = {row["RESOURCE"][0]: " ".join(row["NOTE"]) for row in rows}
    assert "neither process has an I/O context" in notes["IO"]
    assert "neither process has a SysV semaphore undo list" in notes["SYSVSEM"]

    title, table = second.split("\n", 1)
    truth = [g for g in family.groups if {pid1, pid2} <= {p for p, _ in g}]
    assert title == f"Open file descriptions shared by {pid1} and {pid2}: {len(truth)}"
    rows, _ = parse_table(table)
    found = [(row[f"FDS OF {pid1}"][0], row[f"FDS OF {pid2}"][0], row["MODE"][0]) for row in rows]
    expected = [
        (
            ",".join(str(fd) for p, fd in g if p == pid1),
            ",".join(str(fd) for p, fd in g if p == pid2),
            family.mode(next(r for r in g if r[0] == pid1)),
        )
        for g in truth
    ]
    assert found == expected and len(found) == 3
    # The two ends of each pair's private pipe: one file, two descriptions.
    assert reopened and reopened[0].startswith("Files both have open through different")


NO_KCMP = {"KCMP_RS_NO_KCMP": "1"}
_DISABLED = (
    "kcmp(2) is disabled by configuration (KCMP_RS_NO_KCMP=1 in the environment or "
    "kcmp_rs.disable_kcmp()); unset the variable and start a new process to use it"
)


def _undecided_note(n: int) -> str:
    return (
        f"kcmp-rs: incomplete answer: {n} fds undecided: {_DISABLED}; without kcmp(2), "
        "another process's fds can be compared only by copying them: try --allow-pidfd-getfd\n"
    )


_TASKS_NOTE = (
    "kcmp-rs: incomplete answer: the task resources (VM, FILES, FS, SIGHAND, IO, SYSVSEM) "
    f"need kcmp(2), which has no fallback: {_DISABLED}\n"
)


def _fd_rows(out: bytes) -> dict[str, tuple[str, str]]:
    rows, rest = parse_table(out.decode())
    assert rest == []
    return {row["FDS"][0]: (row["MODE"][0], row["TARGET"][0]) for row in rows}


def test_fds_json_is_the_one_process_scan_from_the_core(spawn: Spawn) -> None:
    """``kcmp-rs fds PID -J`` is the scan document of that process with every
    description (the table's rows), written by the core; ``-j`` its JSON Lines under
    the command ``fds``; both the same bytes as the Python path (stdout without an
    fd)."""
    from kcmp_rs.cli._audit import SCAN_RECORDS
    from kcmp_rs.cli._render import json_lines

    child = spawn(_fds_setup)
    pid = child.pid
    for form in ("-J", "-j"):
        native = run_cli("fds", str(pid), form)
        captured = io.StringIO()  # no fileno: the Python path
        with contextlib.redirect_stdout(captured):
            assert cli.main(["fds", str(pid), form]) == 0
        assert native.returncode == 0 and native.stderr == b"", native.stderr
        assert native.stdout.decode() == captured.getvalue(), form
    doc = json.loads(run_cli("fds", str(pid), "-J").stdout)
    assert doc == kcmp_rs.scan([pid], include_unshared=True).to_dict()
    groups = {tuple(m["fd"] for m in d["members"]) for d in doc["descriptions"]}
    assert (child.data["w"], child.data["dup"]) in groups
    assert sorted(fd for g in groups for fd in g) == sorted(
        int(n) for n in os.listdir(f"/proc/{pid}/fd")
    )
    lines = run_cli("fds", str(pid), "-j").stdout.decode()
    assert lines == json_lines(doc, "fds", SCAN_RECORDS)
    assert json.loads(lines.splitlines()[0]) == {
        "record": "header",
        "schema_version": 2,
        "command": "fds",
    }


def test_fds_with_kcmp_unavailable(spawn: Spawn) -> None:
    pid = str(spawn(_fds_setup).pid)  # a pipe's ends and a dup share one inode
    whole = run_cli("fds", pid)
    assert whole.returncode == 0, whole.stderr
    truth = _fd_rows(whole.stdout)
    open_fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))

    done = run_cli("fds", pid, env=NO_KCMP)
    assert done.returncode == 4, done.stderr
    decided = _fd_rows(done.stdout)
    assert all(truth[cell] == row for cell, row in decided.items())  # exact where shown
    shown = [int(fd) for cell in decided for fd in cell.split(",")]
    assert len(shown) <= len(open_fds) - 3
    assert done.stderr.decode() == _undecided_note(len(open_fds) - len(shown))

    done = run_cli("fds", "--allow-pidfd-getfd", pid, env=NO_KCMP)
    assert (done.returncode, done.stderr, done.stdout) == (0, b"", whole.stdout)


def _share_parts(out: bytes) -> tuple[dict[str, str], str, list[tuple[str, ...]]]:
    first, second, *_ = out.decode().split("\n\n")  # then the separate opens, if any
    rows, _ = parse_table(first)
    resources = {row["RESOURCE"][0]: row["SHARED"][0] for row in rows}
    title, _, table = second.partition("\n")
    shared = (
        [tuple(cells[0] for cells in row.values()) for row in parse_table(table)[0]]
        if table
        else []
    )
    return resources, title, shared


def test_share_json_carries_what_the_table_shows(family: Family) -> None:
    """``kcmp-rs share -J``: ``SharedFiles.to_dict()`` plus the task resources and what
    the table shows of each file; ``-j`` the same as JSON Lines; with kcmp blocked the
    resources are null and the status 4, as for the table."""
    from kcmp_rs.cli._render import json_lines

    pid1, pid2 = family.pids[:2]
    done = run_cli("share", str(pid1), str(pid2), "-J")
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    doc = json.loads(done.stdout)
    files = kcmp_rs.shared_files(pid1, pid2).to_dict()

    def without(pairs: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in pair.items() if k not in keys} for pair in pairs]

    stripped = {k: v for k, v in doc.items() if k != "resources"}
    stripped["shared"] = without(doc["shared"], "mode", "target")
    stripped["reopened"] = without(doc["reopened"], "target")
    assert stripped == files
    truth = [g for g in family.groups if {pid1, pid2} <= {p for p, _ in g}]
    assert len(doc["shared"]) == len(truth) > 0
    for pair in doc["shared"]:
        first = (pid1, pair["fds1"][0])
        assert pair["mode"] == family.mode(first)
        assert pair["target"] == os.readlink(f"/proc/{pid1}/fd/{first[1]}")
    names = ["VM", "FILES", "FS", "SIGHAND", "IO", "SYSVSEM"]
    assert [(r["resource"], r["shared"]) for r in doc["resources"]] == [(n, False) for n in names]
    assert "neither process has an I/O context" in doc["resources"][4]["note"]
    lines = run_cli("share", str(pid1), str(pid2), "-j")
    records = {"resources": "resource", "shared": "shared", "reopened": "reopened",
               "undecided": "undecided"}  # fmt: skip
    assert lines.stdout.decode() == json_lines(doc, "share", records)

    blocked = run_cli("share", str(pid1), str(pid2), "-J", env=NO_KCMP)
    assert blocked.returncode == 4
    assert [r["shared"] for r in json.loads(blocked.stdout)["resources"]] == [None] * 6
    assert blocked.stderr.decode().startswith(_TASKS_NOTE)


def test_share_with_kcmp_unavailable(family: Family) -> None:
    pid1, pid2 = family.pids[:2]
    whole = run_cli("share", str(pid1), str(pid2))
    assert whole.returncode == 0
    _, title, truth = _share_parts(whole.stdout)

    done = run_cli("share", str(pid1), str(pid2), env=NO_KCMP)
    assert done.returncode == 4, done.stderr
    resources, partial_title, found = _share_parts(done.stdout)
    assert list(resources.items()) == [
        (r, "?") for r in ("VM", "FILES", "FS", "SIGHAND", "IO", "SYSVSEM")
    ]
    assert set(found) <= set(truth)
    match = re.fullmatch(
        rf"Open file descriptions shared by {pid1} and {pid2}: (none|\d+); (\d+) fds undecided",
        partial_title,
    )
    assert match, partial_title
    assert done.stderr.decode() == _TASKS_NOTE + _undecided_note(int(match[2]))

    # With pidfd_getfd the fd half is whole again; the task half still needs kcmp.
    done = run_cli("share", "--allow-pidfd-getfd", str(pid1), str(pid2), env=NO_KCMP)
    assert done.returncode == 4
    assert done.stderr.decode() == _TASKS_NOTE
    assert _share_parts(done.stdout)[1:] == (title, truth)


def test_share_unrelated_processes(family: Family) -> None:
    pid1, pid2 = family.pids[0], family.pids[2]  # only the lifeline in common
    done = run_cli("share", str(pid1), str(pid2))
    assert done.returncode == 0
    out = done.stdout.decode()
    assert f"Open file descriptions shared by {pid1} and {pid2}: 1\n" in out


# ---- scan ----


def test_scan_table_matches_ground_truth(family: Family) -> None:
    done = run_cli("scan", "-p", pid_list(family))
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""  # no progress when stderr is not a terminal
    rows, summary = scan_table_rows(done.stdout.decode())
    assert [shared_refs(row["SHARED"]) for row in rows] == family.groups
    assert all(line.split(",")[1] == "kcmp-family" for row in rows for line in row["SHARED"])
    assert summary == (
        f"{N_PROCS} processes read, {N_PROCS * FDS_PER_PROC} fds classified, "
        f"{len(family.groups)} descriptions shared, 0 processes skipped"
    )
    for row in rows:
        ref = shared_refs(row["SHARED"])[0]
        assert row["MODE"] == [family.mode(ref)]


def test_scan_pids_may_repeat_and_be_given_twice(family: Family) -> None:
    first, rest = family.pids[0], family.pids[1:]
    done = run_cli("scan", "-p", f"{first},{first}", "-p", ",".join(map(str, rest)), "-J")
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert doc_groups(doc["descriptions"]) == family.groups


def test_scan_json_document(family: Family) -> None:
    done = run_cli("scan", "-p", pid_list(family), "-J")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout.decode("utf-8"))
    check_scan_document(doc)
    assert doc_groups(doc["descriptions"]) == family.groups
    assert doc["skipped"] == [] and doc["undecided"] == [] and doc["fd_table_shared"] == []
    assert doc["processes_read"] == N_PROCS
    assert doc["fds_classified"] == N_PROCS * FDS_PER_PROC


def test_scan_json_lines(family: Family) -> None:
    done = run_cli("scan", "-p", pid_list(family), "--json-lines")
    assert done.returncode == 0, done.stderr
    doc = from_json_lines(done.stdout.decode("utf-8"), "scan", SCAN_RECORDS)
    check_scan_document(doc)
    assert doc_groups(doc["descriptions"]) == family.groups
    # Everything -J carries, nothing more: the same document, key for key.
    whole = run_cli("scan", "-p", pid_list(family), "-J")
    assert doc == json.loads(whole.stdout)


def test_scan_all_lists_unshared_descriptions_too(family: Family) -> None:
    done = run_cli("scan", "-p", pid_list(family), "--all", "-J")
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    check_scan_document(doc)
    found = doc_groups(doc["descriptions"])
    assert sorted(r for g in found for r in g) == sorted(family.labels)
    assert [g for g in found if len(g) > 1] == family.groups


def test_scan_reports_missing_process_and_goes_on(family: Family) -> None:
    gone = missing_pid()
    done = run_cli("scan", "-p", f"{pid_list(family)},{gone}")
    assert done.returncode == 0
    assert done.stderr.decode() == f"kcmp-rs: process {gone} does not exist\n"
    table, skipped, more = split_skipped(done.stdout.decode())
    assert skipped == [(gone, "?", "no such process")] and more == ""
    rows, summary = scan_table_rows(table)
    assert [shared_refs(row["SHARED"]) for row in rows] == family.groups
    assert summary.endswith("1 process skipped (1 no such process)")


def test_scan_hostile_names() -> None:
    command = b"fam\x1b[31m\xff"
    with build_family(2, 8, hostile_names=True, command=command) as fam:
        table = run_cli("scan", "-p", pid_list(fam))
        document = run_cli("scan", "-p", pid_list(fam), "-J")
        lines = run_cli("scan", "-p", pid_list(fam), "-j")
        pair = next(r for r, label in fam.labels.items() if label == "pair:0")
        raw = fam.target(pair)
    assert raw is not None and HOSTILE_NAME in raw
    for done in (table, document, lines):
        assert done.returncode == 0, done.stderr

    # Table: escaped, so no escape sequence reaches the terminal, and all still shows.
    text = table.stdout.decode("ascii")
    assert "\x1b" not in text
    assert "evil\\n\\x1b[31mred\\xff-pair-0" in text
    assert "fam\\x1b[31m\\xff" in text
    rows, _ = scan_table_rows(text)
    assert any(row["TARGET"][0].endswith("evil\\n\\x1b[31mred\\xff-pair-0") for row in rows)

    # JSON: the name whole (a real newline and ESC), the exact bytes in base64.
    doc = json.loads(document.stdout.decode("utf-8"))
    check_scan_document(doc)
    described = next(
        d for d in doc["descriptions"] if list(pair) in [[m["pid"], m["fd"]] for m in d["members"]]
    )
    assert described["target"] == raw.decode("utf-8", "replace")
    assert "\n\x1b[31mred\ufffd-pair-0" in described["target"]
    assert base64.b64decode(described["target_bytes_b64"]) == raw
    member = described["members"][0]
    assert member["command"] == "fam\x1b[31m\ufffd"
    assert base64.b64decode(member["command_bytes_b64"]) == command
    assert from_json_lines(lines.stdout.decode("utf-8"), "scan", SCAN_RECORDS) == doc


def test_scan_example(tmp_path: Path) -> None:
    done = run_cli("scan", "--example", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    pids = [int(p) for p in re.search(r"Example: \d+ processes \(([\d, ]+)\)", out)[1].split(", ")]  # type: ignore[index]
    assert re.search(r"\nAll \d+ shared descriptions found, as built\.\n$", out)
    intro = out.split("\n\n")[0].splitlines()
    assert len(intro) > 1 and all(len(line) <= 120 for line in intro), intro
    table = out.split("\n\n")[1]
    rows, summary = scan_table_rows(table)
    assert {p for row in rows for p, _ in shared_refs(row["SHARED"])} == set(pids)
    assert summary.startswith(f"{len(pids)} processes read")
    assert list(tmp_path.iterdir()) == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), pid


def test_scan_example_json(tmp_path: Path) -> None:
    done = run_cli("scan", "--example", "-J", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    check_scan_document(doc)
    assert doc["descriptions"] and doc["skipped"] == []


def test_scan_with_kcmp_unavailable(family: Family) -> None:
    done = run_cli("scan", "-p", pid_list(family), "-J", env=NO_KCMP)
    assert done.returncode == 4, done.stderr
    doc = json.loads(done.stdout)
    check_scan_document(doc)
    assert doc["undecided"]
    assert done.stderr.decode() == _undecided_note(len(doc["undecided"]))
    done = run_cli("scan", "-p", pid_list(family), "-J", "--allow-pidfd-getfd", env=NO_KCMP)
    assert done.returncode == 0
    assert done.stderr == b""
    doc = json.loads(done.stdout)
    assert doc["undecided"] == [] and doc_groups(doc["descriptions"]) == family.groups


def test_scan_example_with_kcmp_unavailable(tmp_path: Path) -> None:
    env = {**NO_KCMP, "TMPDIR": str(tmp_path)}
    done = run_cli("scan", "--example", "-J", env=env)
    assert done.returncode == 4, done.stderr
    doc = json.loads(done.stdout)
    assert done.stderr.decode() == _undecided_note(len(doc["undecided"]))
    done = run_cli("scan", "--example", "--allow-pidfd-getfd", env=env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\nAll \d+ shared descriptions found, as built\.\n$", done.stdout.decode())
    assert list(tmp_path.iterdir()) == []


def test_progress_only_on_a_terminal_after_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Tty()
    monkeypatch.setattr("sys.stderr", err)
    progress = _cli_io.Progress()
    progress(1, 10)
    assert err.getvalue() == ""  # under a second: nothing
    progress.start -= 2
    progress(2, 10)
    progress(10, 10)
    progress.clear()
    assert err.getvalue() == (
        "\rkcmp-rs: read 2/10 processes\x1b[K"
        "\rkcmp-rs: read 10/10 processes, classifying...\x1b[K"
        "\r\x1b[K"
    )
    monkeypatch.setattr("sys.stderr", io.StringIO())
    quiet = _cli_io.Progress()
    quiet.start -= 2
    quiet(5, 10)
    assert not quiet.shown
