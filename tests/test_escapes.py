"""``escapes()``: fds, cwd and root outside a process's mount namespace or root, on
process families the tests build (children that unshare their mount namespace, umount
lazily, chroot), each finding's mount id checked against the kernel's fdinfo, and
every other kind of file a process holds checked to be no finding."""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_root, raised
from _fallback_helpers import open_eventfd
from _helpers import Spawn, drop_to_nobody, run_in_child, zombie_child
from kcmp_rs import Escape, Escapes

pytestmark = needs_root  # namespaces, mounts and chroot

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNS = 0x00020000
_MS_REC_PRIVATE = 0x4000 | 0x40000
_MNT_DETACH = 2


def _private_mount_namespace() -> None:
    """This process in a mount namespace of its own, its mounts made private."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if _libc.mount(b"none", b"/", None, _MS_REC_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")


def _close_all_but(keep: set[int]) -> None:
    """Closes every fd inherited from the test but pipes (the spawn fixture's) and
    ``keep``: the child's findings are then exactly its own fds'."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            pass


def _fdinfo_mnt_id(pid: int, where: int | str) -> int:
    """The kernel's mount id of fd ``where`` of ``pid``, read by the test itself."""
    with open(f"/proc/{pid}/fdinfo/{where}") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise AssertionError(f"no mnt_id in /proc/{pid}/fdinfo/{where}")


def _our_mounts() -> dict[int, tuple[str, str]]:
    """Our mountinfo: mount id to (mount point, fs type), escapes undone."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-", 6)
            point = fields[4].encode().decode("unicode_escape")
            mounts[int(fields[0])] = (point, fields[dash + 1])
    return mounts


def _mount_ns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def _check_kernel_truth(found: Escapes) -> None:
    """Each finding's mount id as the kernel shows it: an fd's fdinfo, or for cwd and
    root the fdinfo of an O_PATH fd of the test's own to the link."""
    for f in found.findings:
        if isinstance(f.where, int):
            assert f.mnt_id == _fdinfo_mnt_id(f.pid, f.where), f
        else:
            fd = os.open(f"/proc/{f.pid}/{f.where}", os.O_PATH)
            try:
                assert f.mnt_id == _fdinfo_mnt_id(os.getpid(), fd), f
            finally:
                os.close(fd)


def _by_where(found: Escapes, pid: int) -> dict[int | str, Escape]:
    return {f.where: f for f in found.findings if f.pid == pid}


def test_fds_kept_across_unshare_are_found_and_later_ones_are_not(
    me: int, spawn: Spawn, tmp_path: Path
) -> None:
    shared_file = os.open(tmp_path / "shared", os.O_RDWR | os.O_CREAT, 0o600)
    odd_name = os.fsencode(tmp_path) + b"/dir-\xff"
    os.mkdir(odd_name)

    def setup() -> dict[str, int]:
        fds = {
            "dir": os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY),
            "written": os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT, 0o600),
            "read": os.open(tmp_path / "w", os.O_RDONLY),
            "odd": os.open(odd_name, os.O_RDONLY | os.O_DIRECTORY),
            "shared": shared_file,
        }
        os.chdir(tmp_path)
        _close_all_but(set(fds.values()))
        _private_mount_namespace()
        fds["after"] = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
        return fds

    try:
        child = spawn(setup)
        fds = child.data
        found = kcmp_rs.escapes([me, child.pid])
    finally:
        os.close(shared_file)
    _check_kernel_truth(found)
    mine = _by_where(found, child.pid)
    assert sorted(mine, key=str) == sorted(
        [fds[k] for k in ("dir", "written", "read", "odd", "shared")], key=str
    ), found
    assert not _by_where(found, me)
    ours = _our_mounts()
    d = mine[fds["dir"]]
    assert (d.kind, d.severity, d.file_type, d.mode, d.path) == (
        "outside-namespace",
        "high",
        "DIR",
        "r",
        "/tmp",
    )
    assert (d.mount_point, d.fs_type) == ours[d.mnt_id]
    assert d.mount_namespace == _mount_ns(child.pid) != _mount_ns(me)
    assert (d.container, d.shared_with, d.fs_shared_with) == (None, (), ())
    w = mine[fds["written"]]
    assert (w.severity, w.file_type, w.mode, w.path) == ("high", "REG", "w", str(tmp_path / "w"))
    r = mine[fds["read"]]
    assert (r.severity, r.mode) == ("medium", "r")
    s = mine[fds["shared"]]
    assert [(m.pid, m.fd) for m in s.shared_with] == [(me, shared_file)]
    with open(f"/proc/{me}/comm") as comm:
        assert s.shared_with[0].command == comm.read().rstrip("\n")
    odd = mine[fds["odd"]].to_dict()
    assert odd["path_bytes_b64"] and os.fsencode(mine[fds["odd"]].path) == odd_name
    # cwd and root move to the new namespace's copies with the unshare: nothing to find.
    assert "cwd" not in mine and "root" not in mine
    assert (found.found, found.counts()) == (5, {"high": 4, "medium": 1, "info": 0})
    assert (found.processes_read, found.mount_namespaces_read) == (2, 2)
    assert found.complete
    doc = json.loads(json.dumps(found.to_dict()))
    assert doc["found"] == 5 and doc["complete"] is True
    assert [f["where"] for f in doc["findings"]] == [f.where for f in found.findings]
    assert set(doc["findings"][0]) >= {
        "pid", "command", "where", "kind", "severity", "mnt_id", "fs_type", "path",
        "mount_point", "file_type", "mode", "container", "mount_namespace",
        "shared_with", "fs_shared_with",
    }  # fmt: skip


def test_a_lazily_unmounted_mount_is_detached(spawn: Spawn, tmp_path: Path) -> None:
    point = tmp_path / "mnt"
    point.mkdir()

    def setup() -> dict[str, int]:
        _close_all_but(set())
        _private_mount_namespace()
        if _libc.mount(b"tmpfs", os.fsencode(point), b"tmpfs", 0, None) != 0:
            raise OSError(ctypes.get_errno(), "mount tmpfs")
        fd = os.open(point / "f", os.O_RDWR | os.O_CREAT, 0o600)
        if _libc.umount2(os.fsencode(point), _MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), "umount2")
        return {"fd": fd}

    child = spawn(setup)
    found = kcmp_rs.escapes([child.pid])
    _check_kernel_truth(found)
    f = _by_where(found, child.pid)[child.data["fd"]]
    assert (f.kind, f.severity, f.fs_type, f.mount_point, f.mode) == (
        "detached",
        "high",
        None,
        None,
        "rw",
    )
    assert len(found.findings) == 1


def test_a_chroot_with_a_file_and_the_cwd_outside_its_root(spawn: Spawn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").write_text("x")

    def setup() -> dict[str, int]:
        fd = os.open(tmp_path / "outside", os.O_RDONLY)
        _close_all_but({fd})
        os.chdir(tmp_path)
        os.chroot(root)  # no chdir: the cwd stays outside
        return {"fd": fd}

    child = spawn(setup)
    found = kcmp_rs.escapes([child.pid])
    _check_kernel_truth(found)
    mine = _by_where(found, child.pid)
    assert sorted(mine, key=str) == sorted([child.data["fd"], "cwd"], key=str)
    f = mine[child.data["fd"]]
    assert (f.kind, f.severity, f.path) == ("outside-root", "medium", str(tmp_path / "outside"))
    cwd = mine["cwd"]
    assert (cwd.kind, cwd.severity, cwd.file_type, cwd.mode, cwd.path) == (
        "outside-root",
        "high",
        "DIR",
        None,
        str(tmp_path),
    )
    assert [f.where for f in found.findings] == [child.data["fd"], "cwd"]


def test_a_device_from_outside_is_info_and_not_found(spawn: Spawn) -> None:
    def setup() -> dict[str, int]:
        fd = os.open("/dev/null", os.O_RDWR)
        _close_all_but({fd})
        _private_mount_namespace()
        return {"fd": fd}

    child = spawn(setup)
    found = kcmp_rs.escapes([child.pid])
    _check_kernel_truth(found)
    (f,) = found.findings
    assert (f.where, f.kind, f.severity, f.file_type) == (child.data["fd"], "device", "info", "CHR")
    assert (found.found, found.counts()) == (0, {"high": 0, "medium": 0, "info": 1})


def _device_audit_without_kcmp(pid: int) -> tuple[Any, ...]:
    kcmp_rs.disable_kcmp()
    found = kcmp_rs.escapes([pid])
    return [(f.severity, f.shared_with, f.fs_shared_with) for f in found.findings], found.notes


def test_a_device_alone_asks_nothing_kcmp_would_decide(spawn: Spawn) -> None:
    # A podman exec process's stdin is the host's /dev/null: without kcmp (a container's
    # default seccomp profile) its audit is still complete, not status 4 for a device.
    def setup() -> dict[str, int]:
        fd = os.open("/dev/null", os.O_RDONLY)
        _close_all_but({fd})
        _private_mount_namespace()
        return {}

    child = spawn(setup)
    findings, notes = run_in_child(_device_audit_without_kcmp, child.pid).unwrap()
    assert (findings, notes) == ([("info", (), None)], ())


def _many_kinds_of_files() -> list[int]:
    fds = list(os.pipe())
    a, b = socket.socketpair()
    fds += [a.detach(), b.detach()]
    fds.append(open_eventfd())
    fds.append(os.memfd_create("escapes-test"))
    fds.append(os.open("/dev/null", os.O_RDWR))
    fds.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    epoll = select.epoll()
    fds.append(os.dup(epoll.fileno()))  # the copy keeps the set alive
    epoll.close()
    inotify = _libc.inotify_init1(os.O_CLOEXEC)
    if inotify >= 0:
        fds.append(inotify)
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        fds.append(pidfd_open(os.getpid()))
    return fds


def test_no_false_positives_among_ordinary_files_threads_and_children(
    me: int, spawn: Spawn
) -> None:
    fds = _many_kinds_of_files()
    ready = threading.Event()
    done = threading.Event()
    tids: list[int] = []

    def thread() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        done.wait(30)

    t = threading.Thread(target=thread)
    t.start()
    try:
        ready.wait(30)
        plain = spawn()
        kinds = spawn(lambda: {"fds": _many_kinds_of_files()})
        pids = [me, tids[0], plain.pid, kinds.pid]
        found = kcmp_rs.escapes(pids)
        assert found.findings == (), found
        assert (found.skipped, found.notes, found.complete) == ((), (), True)
        assert (found.processes_read, found.mount_namespaces_read) == (4, 1)
        # A thread id alone reads its process.
        alone = kcmp_rs.escapes([tids[0]])
        assert (alone.findings, alone.skipped, alone.processes_read) == ((), (), 1)
    finally:
        done.set()
        t.join()
        for fd in fds:
            os.close(fd)


def test_processes_that_cannot_be_read_are_skipped_with_why(spawn: Spawn) -> None:
    with zombie_child() as zombie:
        gone = spawn()
        gone_pid = gone.pid
        gone.stop()
        found = kcmp_rs.escapes([zombie, gone_pid])
    assert found.findings == ()
    assert {(s.pid, s.reason) for s in found.skipped} == {
        (zombie, "zombie"),
        (gone_pid, "no such process"),
    }
    assert not found.complete
    assert found.to_dict()["skipped"] == [s.to_dict() for s in found.skipped]


def _audit_as_nobody(pid: int) -> list[tuple[int, str]]:
    drop_to_nobody()
    return [(s.pid, s.reason) for s in kcmp_rs.escapes([pid]).skipped]


def test_another_users_process_is_skipped_permission_denied(spawn: Spawn) -> None:
    other = spawn()
    assert run_in_child(_audit_as_nobody, other.pid).unwrap() == [(other.pid, "permission denied")]


@pytest.mark.parametrize("pids", [5, "123", [1.0], [None], [True], [-1], [0], [2**31]], ids=repr)
def test_argument_errors_are_scans(pids: Any) -> None:
    got = raised(kcmp_rs.escapes, pids)
    want = raised(kcmp_rs.scan, pids)
    assert (type(got), str(got)) == (type(want), str(want))


def test_an_empty_audit(me: int) -> None:
    found = kcmp_rs.escapes([])
    assert (found.findings, found.skipped, found.processes_read) == ((), (), 0)
    assert found.to_dict() == {
        "schema_version": kcmp_rs._results.SCHEMA_VERSION,
        "findings": [],
        "skipped": [],
        "processes_read": 0,
        "mount_namespaces_read": 0,
        "notes": [],
        "counts": {"high": 0, "medium": 0, "info": 0},
        "found": 0,
        "complete": True,
    }


def _audit_without_kcmp(pid: int) -> tuple[Any, ...]:
    kcmp_rs.disable_kcmp()
    found = kcmp_rs.escapes([os.getpid(), pid])
    (f,) = [f for f in found.findings if f.pid == pid]
    return f.where, f.fs_shared_with, f.shared_with, found.notes, found.complete


def test_without_kcmp_what_cannot_be_decided_is_said(spawn: Spawn, tmp_path: Path) -> None:
    shared = os.open(tmp_path / "shared", os.O_RDWR | os.O_CREAT, 0o600)
    try:

        def setup() -> dict[str, int]:
            _close_all_but({shared})
            _private_mount_namespace()
            return {}

        child = spawn(setup)
        where, fs_shared, shared_with, notes, complete = run_in_child(
            _audit_without_kcmp, child.pid
        ).unwrap()
    finally:
        os.close(shared)
    assert (where, fs_shared, shared_with, complete) == (shared, None, (), False)
    assert any("fs context" in n and "cannot be decided" in n for n in notes), notes
    assert any("could not be told apart without kcmp" in n for n in notes), notes
