"""``kcmp-rs escapes``: the table, -J and -j, the exit statuses and every way it can
fail; on real children (a directory of this namespace held across unshare(CLONE_NEWNS))
and on constructed answers for what no child can be made to show on demand."""

from __future__ import annotations

import ctypes
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_root
from _helpers import Spawn
from _scan_helpers import missing_pid, parse_table, run_cli
from kcmp_rs._escapes import Container, Escape, Escapes
from kcmp_rs._results import Member, Skipped
from kcmp_rs.cli import _escapes as cli_escapes
from kcmp_rs.cli._escapes import escapes_summary, escapes_table
from kcmp_rs.cli._main import main

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000


def escapes(*args: object) -> tuple[int, str, str]:
    done = run_cli("escapes", *map(str, args))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def table_and_summary(out: str) -> tuple[list[dict[str, list[str]]], str]:
    """The findings' rows and the summary line after them."""
    *table, summary = out.splitlines()
    rows, rest = parse_table("\n".join(table) + "\n")
    assert rest == []
    return rows, summary


# ---- real children ----


def _in_new_mount_namespace(opened: dict[str, tuple[str, int]]) -> Callable[[], dict[str, int]]:
    """A child's setup: opens each path with its flags, closes every other fd but the
    pipes the spawn helper talks through (pytest's capture files would be findings
    too), then moves into a mount namespace of its own with every mount private: the
    fds it opened stay on mounts of this namespace, its cwd and root move to the copies."""

    def setup() -> dict[str, int]:
        fds = {name: os.open(path, flags) for name, (path, flags) in opened.items()}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                keep = fd in fds.values() or stat.S_ISFIFO(os.fstat(fd).st_mode)
            except OSError:  # the listing's own fd, closed by now
                continue
            if not keep:
                os.close(fd)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        return fds

    return setup


@needs_root
def test_a_directory_held_across_unshare_is_found_high(spawn: Spawn, tmp_path: Path) -> None:
    directory = os.O_RDONLY | os.O_DIRECTORY
    child = spawn(
        _in_new_mount_namespace({"dir": (str(tmp_path), directory), "null": (os.devnull, 0)})
    )
    fd, null = child.data["dir"], child.data["null"]
    assert os.readlink(f"/proc/{child.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    status, out, err = escapes("-p", child.pid)
    assert (status, err) == (3, "")
    rows, summary = table_and_summary(out)
    got = [(r["PID"], r["WHERE"], r["KIND"], r["SEVERITY"], r["PATH"]) for r in rows]
    assert got == [
        ([str(child.pid)], [str(where)], [kind], [severity], [path])
        for where, kind, severity, path in sorted(
            [
                (fd, "outside-namespace", "high", str(tmp_path)),
                (null, "device", "info", "/dev/null"),
            ]
        )
    ]
    assert all(r["CONTAINER"] == ["-"] for r in rows)
    assert summary == (
        "1 escape (1 high, 0 medium), 1 info; 1 process read in 1 mount namespace, 0 skipped"
    )
    assert len(summary) <= 120


@needs_root
def test_json_is_to_dict_and_json_lines_carry_every_finding(spawn: Spawn, tmp_path: Path) -> None:
    directory = os.O_RDONLY | os.O_DIRECTORY
    child = spawn(_in_new_mount_namespace({"dir": (str(tmp_path), directory)}))
    status, out, err = escapes("-p", child.pid, "-J")
    assert (status, err) == (3, "")
    doc = json.loads(out)
    assert doc == kcmp_rs.escapes([child.pid]).to_dict()
    [finding] = doc["findings"]
    assert (finding["pid"], finding["where"], finding["severity"]) == (
        child.pid,
        child.data["dir"],
        "high",
    )
    assert (doc["found"], doc["complete"], doc["counts"]) == (
        1,
        True,
        {"high": 1, "medium": 0, "info": 0},
    )
    status, out, err = escapes("-p", child.pid, "-j")
    assert (status, err) == (3, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["record"] for r in records] == ["header", "finding", "counts", "summary"]
    assert records[0] == {
        "record": "header",
        "schema_version": doc["schema_version"],
        "command": "escapes",
    }
    assert records[1] == {"record": "finding", **finding}
    assert records[-1]["found"] == 1 and records[-1]["complete"] is True


@needs_root
def test_a_device_from_outside_alone_is_info_and_status_0(spawn: Spawn) -> None:
    child = spawn(_in_new_mount_namespace({"null": (os.devnull, os.O_RDONLY)}))
    status, out, err = escapes("-p", child.pid)
    assert (status, err) == (0, "")
    rows, summary = table_and_summary(out)
    assert [(r["WHERE"], r["SEVERITY"]) for r in rows] == [([str(child.data["null"])], ["info"])]
    assert summary == "no escapes, 1 info; 1 process read in 1 mount namespace, 0 skipped"


def test_plain_children_have_nothing_to_report(spawn: Spawn) -> None:
    pids = sorted([spawn().pid, spawn().pid])
    status, out, err = escapes("-p", ",".join(map(str, pids)))
    assert (status, err) == (0, "")
    assert out == "no escapes; 2 processes read in 1 mount namespace, 0 skipped\n"
    status, out, _ = escapes("-p", pids[0], "-p", pids[1], "-J")
    doc = json.loads(out)
    assert (status, doc["findings"], doc["found"], doc["complete"]) == (0, [], 0, True)
    assert doc["processes_read"] == 2


def test_a_skipped_process_makes_nothing_found_incomplete_status_4(spawn: Spawn) -> None:
    child = spawn()
    gone = missing_pid()
    status, out, err = escapes("-p", f"{child.pid},{gone}")
    assert status == 4
    assert err == (
        f"kcmp-rs: process {gone} does not exist\n"
        "kcmp-rs: incomplete audit: no escape found, 1 process skipped\n"
    )
    lines = out.splitlines()
    assert lines[0] == (
        "no escape found, but the audit is incomplete; "
        "1 process read in 1 mount namespace, 1 skipped"
    )
    assert "no escapes" not in out
    assert lines[1].split() == ["SKIPPED", "COMMAND", "REASON"]
    assert lines[2].split() == [str(gone), "?", "no", "such", "process"]
    status, out, err = escapes("-p", f"{child.pid},{gone}", "-J")
    doc = json.loads(out)
    assert (status, doc["complete"], doc["skipped"]) == (
        4,
        False,
        [{"pid": gone, "reason": "no such process"}],
    )


# ---- errors ----


def test_no_process_read_is_status_1_as_scan_does() -> None:
    """No answer, not "no escapes": the summary and the skipped rows still say why."""
    gone = missing_pid()
    status, out, err = escapes("-p", gone)
    assert status == 1
    assert err == f"kcmp-rs: process {gone} does not exist\nkcmp-rs: no process could be read\n"
    summary, *skipped = out.splitlines()
    assert summary == (
        "no escape found, but the audit is incomplete; "
        "0 processes read in 0 mount namespaces, 1 skipped"
    )
    assert [line.split() for line in skipped] == [
        ["SKIPPED", "COMMAND", "REASON"],
        [str(gone), "?", "no", "such", "process"],
    ]
    status, out, err = escapes("-p", gone, "-J")
    assert (status, json.loads(out)["processes_read"]) == (1, 0)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-p", "x"], "argument -p/--pid: not a process id: 'x'"),
        (["-p", "0"], "argument -p/--pid: not a process id: '0'"),
        (["-p", "1,,2"], "argument -p/--pid: not a process id: ''"),
        (["-J", "-j"], "argument -j/--json-lines: not allowed with argument -J/--json"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["4242"], "unrecognized arguments: 4242"),
    ],
)
def test_usage_errors_are_status_2_naming_the_argument(args: list[str], says: str) -> None:
    status, out, err = escapes(*args)
    assert (status, out) == (2, "")
    assert err.startswith("usage: kcmp-rs escapes")
    assert err.endswith(f"kcmp-rs escapes: error: {says}\n")


# ---- constructed answers: what the renderer and the statuses make of them ----


def finding(**changes: Any) -> Escape:
    fields: dict[str, Any] = {
        "pid": 4242,
        "command": "runc:[2:INIT]",
        "where": 3,
        "kind": "outside-namespace",
        "severity": "high",
        "mnt_id": 27,
        "fs_type": "cgroup2",
        "path": "/sys/fs/cgroup",
        "mount_point": "/sys/fs/cgroup",
        "file_type": "DIR",
        "mode": "r",
        "container": Container("podman", "0123456789abcdef" * 4),
        "mount_namespace": 4026532290,
        "shared_with": (),
        "fs_shared_with": None,
    }
    fields.update(changes)
    return Escape(**fields)


def answer(
    findings: tuple[Escape, ...] = (),
    skipped: tuple[Skipped, ...] = (),
    notes: tuple[str, ...] = (),
) -> Escapes:
    return Escapes(
        findings=findings,
        skipped=skipped,
        processes_read=3,
        mount_namespaces_read=2,
        notes=notes,
    )


def test_the_table_escapes_names_and_shortens_container_ids() -> None:
    found = answer(
        (
            finding(),
            finding(
                where="cwd",
                kind="detached",
                severity="medium",
                command="ev\x1b[31mil\n",
                path="/gone/x\ny",
                fs_type=None,
                container=None,
            ),
        )
    )
    rows, rest = parse_table(escapes_table(found))
    assert rest == []
    assert [[r[h] for h in ("PID", "WHERE", "KIND", "SEVERITY", "MNT", "FS")] for r in rows] == [
        [["4242"], ["3"], ["outside-namespace"], ["high"], ["27"], ["cgroup2"]],
        [["4242"], ["cwd"], ["detached"], ["medium"], ["27"], ["?"]],
    ]
    assert [r["COMMAND"] for r in rows] == [["runc:[2:INIT]"], ["ev\\x1b[31mil\\n"]]
    assert [r["CONTAINER"] for r in rows] == [["podman:0123456789ab"], ["-"]]
    assert [r["PATH"] for r in rows] == [["/sys/fs/cgroup"], ["/gone/x\\ny"]]
    assert escapes_table(answer()) == ""


def test_the_summary_never_says_no_escapes_of_an_incomplete_audit() -> None:
    gone = (Skipped(77, "permission denied"),)
    high, info = finding(), finding(kind="device", severity="info", path="/dev/null")
    medium = finding(severity="medium", where=5)
    cases = [
        (answer(), "no escapes; 3 processes read in 2 mount namespaces, 0 skipped"),
        (answer((info,)), "no escapes, 1 info; 3 processes read in 2 mount namespaces, 0 skipped"),
        (
            answer(skipped=gone),
            "no escape found, but the audit is incomplete; "
            "3 processes read in 2 mount namespaces, 1 skipped",
        ),
        (
            answer(notes=("mount namespace 4026532290: its mounts could not be read",)),
            "no escape found, but the audit is incomplete; "
            "3 processes read in 2 mount namespaces, 0 skipped, 1 note",
        ),
        (
            answer((high, medium, info), gone),
            "2 escapes (1 high, 1 medium), 1 info; the audit is incomplete; "
            "3 processes read in 2 mount namespaces, 1 skipped",
        ),
    ]
    for found, line in cases:
        assert escapes_summary(found) == line


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> Callable[[Escapes | BaseException], None]:
    """Makes the command's call of ``escapes()`` give this answer or raise this."""

    def give(value: Escapes | BaseException) -> None:
        def fake(pids: object = None) -> Escapes:
            if isinstance(value, BaseException):
                raise value
            return value

        monkeypatch.setattr(cli_escapes, "escapes", fake)

    return give


@pytest.mark.parametrize(
    ("found", "status", "stderr"),
    [
        (answer(), 0, ""),
        (answer((finding(severity="info", kind="device"),)), 0, ""),
        (answer((finding(severity="medium"),)), 3, ""),
        (
            answer((finding(),), notes=("cannot read mountinfo of 4242",)),
            3,
            "kcmp-rs: incomplete: cannot read mountinfo of 4242\n",
        ),
        (
            answer(notes=("cannot read mountinfo of 4242",)),
            4,
            "kcmp-rs: incomplete: cannot read mountinfo of 4242\n"
            "kcmp-rs: incomplete audit: no escape found, 0 processes skipped and 1 note\n",
        ),
        (
            answer((finding(severity="info", kind="device"),), (Skipped(77, "zombie"),)),
            4,
            "kcmp-rs: process 77 has exited and awaits reaping (a zombie)\n"
            "kcmp-rs: incomplete audit: no escape found, 1 process skipped\n",
        ),
    ],
)
def test_exit_statuses(
    answered: Callable[[Escapes | BaseException], None],
    capsys: pytest.CaptureFixture[str],
    found: Escapes,
    status: int,
    stderr: str,
) -> None:
    answered(found)
    assert main(["escapes", "-p", "77", "-J"]) == status
    out, err = capsys.readouterr()
    assert (json.loads(out), err) == (found.to_dict(), stderr)


def test_an_error_of_the_library_is_one_line_status_1(
    answered: Callable[[Escapes | BaseException], None], capsys: pytest.CaptureFixture[str]
) -> None:
    answered(PermissionError(13, "Permission denied", "/proc/self/mountinfo"))
    assert main(["escapes"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "kcmp-rs: [Errno 13] Permission denied: '/proc/self/mountinfo'\n")
    answered(KeyboardInterrupt())
    assert main(["escapes"]) == 130
    assert capsys.readouterr() == ("", "")


def test_shared_with_reaches_json(
    answered: Callable[[Escapes | BaseException], None], capsys: pytest.CaptureFixture[str]
) -> None:
    held = finding(shared_with=(Member(1, 7, "runc"),), fs_shared_with=(1,))
    answered(answer((held,)))
    assert main(["escapes", "-j"]) == 3
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [record] = [r for r in records if r["record"] == "finding"]
    assert record == {"record": "finding", **held.to_dict()}
