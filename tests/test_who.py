"""``kcmp_rs.who(paths, pids)`` and ``kcmp-rs who``: every fd that has a file open,
grouped by open file description, checked against the kernel's own answer (kcmp
through the ctypes baseline) and the offsets the processes set."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import kcmp_rs
import pytest
from _checks import holders_truth
from _helpers import run_in_child
from _scan_helpers import missing_pid, run_cli
from conftest import Spawn
from kcmp_rs import FileDescription, Who, who

Ref = tuple[int, int]


def _groups(found: Who, i: int = 0) -> list[tuple[Ref, ...]]:
    return [tuple((m.pid, m.fd) for m in d.members) for d in found.files[i].descriptions]


def _truth(pids: list[int], refs: list[Ref]) -> list[tuple[Ref, ...]]:
    """The refs grouped by description the slow way (one kcmp each), by smallest."""
    groups = {tuple(holders_truth(r, pids)) for r in refs}
    return sorted(groups)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[dict[str, int]]:
    """A file opened three ways here: ``rw`` (written 5 bytes) and its dup ``dup``,
    and a separate ``ro`` open at offset 2; closed at teardown."""
    path = tmp_path / "data"
    rw = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(rw, b"hello")
    dup = os.dup(rw)
    ro = os.open(path, os.O_RDONLY)
    os.lseek(ro, 2, os.SEEK_SET)
    yield {"rw": rw, "dup": dup, "ro": ro}
    for fd in (rw, dup, ro):
        os.close(fd)


def test_who_groups_every_holder_by_description_with_mode_and_offset(
    spawn: Spawn, opened: dict[str, int], tmp_path: Path
) -> None:
    me = os.getpid()
    child = spawn()  # inherits all three fds: the same two descriptions
    pids = [me, child.pid]
    found = who(tmp_path / "data", pids)
    assert found.complete and found.processes_read == 2
    refs = [(p, opened[k]) for p in pids for k in ("rw", "dup", "ro")]
    assert sorted(_groups(found)) == _truth(pids, refs)
    by_first = {d.members[0].fd: d for d in found.files[0].descriptions}
    rw, ro = by_first[min(opened["rw"], opened["dup"])], by_first[opened["ro"]]
    assert (rw.mode, rw.offset, ro.mode, ro.offset) == ("rw", 5, "r", 2)
    assert isinstance(rw, FileDescription) and rw.type == "REG"
    assert found.files[0].path == str(tmp_path / "data")
    st = os.stat(tmp_path / "data")
    assert (found.files[0].device, found.files[0].inode) == (st.st_dev, st.st_ino)


def test_a_symlink_and_a_relative_path_mean_the_file_they_resolve_to(
    opened: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    found = who(["data", b"link", tmp_path / "data"], [os.getpid()])
    assert [f.path for f in found.files] == ["data", "link", str(tmp_path / "data")]
    assert _groups(found, 0) == _groups(found, 1) == _groups(found, 2)
    assert len(_groups(found, 0)) == 2


def test_an_fd_passed_over_a_socket_is_in_its_description(
    spawn: Spawn, opened: dict[str, int], tmp_path: Path
) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:

        def receive() -> int:
            _, fds, _, _ = socket.recv_fds(theirs, 1, 1)
            return fds[0]

        socket.send_fds(ours, [b"x"], [opened["ro"]])  # queued in the socket until read
        child = spawn(receive)
        passed = child.data
    found = who(tmp_path / "data", [os.getpid(), child.pid])
    ro = next(g for g in _groups(found) if (os.getpid(), opened["ro"]) in g)
    assert (child.pid, passed) in ro


def test_a_file_nobody_has_open_has_no_descriptions(spawn: Spawn, tmp_path: Path) -> None:
    (tmp_path / "quiet").write_bytes(b"")
    found = who(tmp_path / "quiet", [os.getpid(), spawn().pid])
    assert found.files[0].descriptions == () and found.complete


def test_who_refuses_what_it_cannot_resolve_or_read(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        who(tmp_path / "nope")
    assert e.value.filename == str(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"^who\(\) needs at least one path$"):
        who([])
    with pytest.raises(TypeError, match=r"^pids must be an iterable of ints, not str$"):
        who(tmp_path, "12")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^allow_pidfd_getfd must be a bool, not int$"):
        who(tmp_path, [os.getpid()], allow_pidfd_getfd=1)  # type: ignore[arg-type]
    gone = missing_pid()
    found = who(tmp_path, [gone])
    assert [(s.pid, s.reason) for s in found.skipped] == [(gone, "no such process")]
    assert not found.complete and found.processes_read == 0


def _who_without_kcmp(path: str, pids: list[int]) -> tuple[list[tuple[Ref, ...]], list[Ref]]:
    kcmp_rs.disable_kcmp()
    found = who(path, pids, allow_pidfd_getfd=True)
    return _groups(found), list(found.undecided)


def test_who_where_kcmp_is_blocked_is_exact_through_the_fallbacks(
    spawn: Spawn, opened: dict[str, int], tmp_path: Path
) -> None:
    me = os.getpid()
    child = spawn()
    pids = [me, child.pid]
    truth = _groups(who(tmp_path / "data", pids))
    groups, undecided = run_in_child(_who_without_kcmp, str(tmp_path / "data"), pids).unwrap()
    assert undecided == [] and groups == truth


def test_cli_who_table_json_and_errors(opened: dict[str, int], tmp_path: Path) -> None:
    me = str(os.getpid())
    path = str(tmp_path / "data")
    done = run_cli("who", path, "-p", me)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith(f"{path} (REG, device ") and lines[0].endswith(": 2 descriptions")
    assert lines[-1] == "1 process with 3 fds on 1 path; 1 process read, 0 skipped"

    doc = json.loads(run_cli("who", path, "-p", me, "-J").stdout)
    assert doc == who(path, [os.getpid()]).to_dict()
    assert [d["offset"] for d in doc["files"][0]["descriptions"]] == [5, 2]
    records = [
        json.loads(line)["record"]
        for line in run_cli("who", path, "-p", me, "-j").stdout.splitlines()
    ]
    assert records == ["header", "file", "summary"]

    missing = run_cli("who", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stdout) == (1, b"")
    assert missing.stderr.decode() == f"kcmp-rs: {tmp_path / 'nope'}: No such file or directory\n"
    gone = missing_pid()
    unread = run_cli("who", path, "-p", str(gone))
    assert unread.returncode == 1
    assert unread.stderr.decode() == (
        f"kcmp-rs: process {gone} does not exist\nkcmp-rs: no process could be read\n"
    )
