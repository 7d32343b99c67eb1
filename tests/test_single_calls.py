"""The single calls against the kernel, the raw syscall and each other: a port of the
kernel's tools/testing/selftests/kcmp/kcmp_test.c (``kcmp``, ``same_file``,
``same_epoll_target``, the task comparisons), then ``sharing()`` and every
``same_*()`` task comparison with itself, a thread, forked children, and children
with an I/O context or a SysV undo list of their own. Errors of these calls are in
``test_errors.py``, their argument checks in ``test_arguments.py``. Every process
touched here is one this module started.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import select
import threading
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_kcmp, outcome, unraise
from _helpers import ChildResult, libc, run_in_child
from conftest import Spawn
from kcmp_rs import KcmpType, Order, Sharing, baseline

ME = os.getpid()


# ---- the kernel selftest ----


def _selftest_child(
    pid1: int, path: str, fd1: int, pipe_w: int, epfd: int, tfd: int
) -> dict[str, Any]:
    """The child half of kcmp_test.c: compares itself (pid2) with its parent (pid1)."""
    pid2 = os.getpid()
    fd2 = os.open(path, os.O_RDWR)
    task_types = [KcmpType.FILES, KcmpType.VM, KcmpType.FS, KcmpType.SIGHAND]
    slot = (ctypes.c_uint32 * 3)(epfd, tfd, 0)  # struct kcmp_epoll_slot
    return {
        "pid2": pid2,
        "reopen": kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd2),
        "reopen_back": kcmp_rs.kcmp(pid2, pid1, KcmpType.FILE, fd2, fd1),
        "reopen_baseline": baseline.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd2),
        "reopen_same_file": kcmp_rs.same_file(pid1, fd1, pid2, fd2),
        "inherited": kcmp_rs.kcmp(pid1, pid2, KcmpType.FILE, fd1, fd1),
        "inherited_same_file": kcmp_rs.same_file(pid1, fd1, pid2, fd1),
        "tasks": {t.name: kcmp_rs.kcmp(pid1, pid2, t) for t in task_types},
        "tasks_baseline": {t.name: baseline.kcmp(pid1, pid2, t) for t in task_types},
        "self1": {t.name: kcmp_rs.kcmp(pid1, pid1, t) for t in task_types},
        "self2": {t.name: kcmp_rs.kcmp(pid2, pid2, t) for t in task_types},
        "io_sysvsem": [
            kcmp_rs.kcmp(pid1, pid2, KcmpType.IO),
            kcmp_rs.kcmp(pid1, pid2, KcmpType.SYSVSEM),
        ],
        "io_sysvsem_baseline": [
            baseline.kcmp(pid1, pid2, KcmpType.IO),
            baseline.kcmp(pid1, pid2, KcmpType.SYSVSEM),
        ],
        "invalid": outcome(kcmp_rs.kcmp, pid1, pid2, 9),
        "invalid_baseline": outcome(baseline.kcmp, pid1, pid2, 9),
        "epoll_target": kcmp_rs.same_epoll_target(pid1, pipe_w, pid1, epfd, tfd),
        "epoll_target_child": kcmp_rs.same_epoll_target(pid2, pipe_w, pid1, epfd, tfd),
        "epoll_target_baseline": baseline.kcmp(
            pid1, pid1, KcmpType.EPOLL_TFD, pipe_w, ctypes.addressof(slot)
        ),
    }


@needs_kcmp
def test_kernel_selftest_port(tmp_path: Path, fd_leak_check: None) -> None:
    path = str(tmp_path / "kcmp-test-file")
    fd1 = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    r, w = os.pipe()
    ep = select.epoll()
    try:
        ep.register(r, select.EPOLLIN | select.EPOLLOUT)
        fddup = os.dup(w)
        ep.register(fddup, select.EPOLLIN | select.EPOLLOUT)
        os.close(fddup)  # registered under a number that is closed now
        result: ChildResult[dict[str, Any]] = run_in_child(
            _selftest_child, ME, path, fd1, w, ep.fileno(), fddup
        )
        got = result.unwrap()
        assert result.exitcode == 0 and os.WIFEXITED(result.status)
        assert got["pid2"] == result.pid != ME
    finally:
        ep.close()
        for fd in (fd1, r, w):
            os.close(fd)

    assert got["reopen"] in (Order.LESS, Order.GREATER)
    assert {got["reopen"], got["reopen_back"]} == {Order.LESS, Order.GREATER}
    assert got["reopen_baseline"] is got["reopen"]
    assert got["reopen_same_file"] is False
    assert got["inherited"] is Order.EQUAL
    assert got["inherited_same_file"] is True
    for name, order in got["tasks"].items():
        assert order in (Order.LESS, Order.GREATER), name
        assert got["tasks_baseline"][name] is order, name
    assert all(o is Order.EQUAL for o in got["self1"].values())
    assert all(o is Order.EQUAL for o in got["self2"].values())
    # EQUAL when neither has one; but a process that ever started a thread has a SysV
    # undo list its forked child lacks, so only agreement with the raw call is certain.
    assert got["io_sysvsem"] == got["io_sysvsem_baseline"]
    invalid = unraise(got["invalid"])
    assert type(invalid) is ValueError
    assert str(invalid) == "type must be a KcmpType (0..7), got 9"
    check_raw = unraise(got["invalid_baseline"])
    assert type(check_raw) is OSError
    assert isinstance(check_raw, OSError) and check_raw.errno == errno.EINVAL
    assert got["epoll_target"] is True
    assert got["epoll_target_child"] is True
    assert got["epoll_target_baseline"] is Order.EQUAL


# ---- sharing() and same_*() ----

SAME_FUNCS = {
    "vm": kcmp_rs.same_vm,
    "files": kcmp_rs.same_files,
    "fs": kcmp_rs.same_fs,
    "sighand": kcmp_rs.same_sighand,
    "io": kcmp_rs.same_io,
    "sysvsem": kcmp_rs.same_sysvsem,
}
TASK_TYPES = {
    "vm": KcmpType.VM,
    "files": KcmpType.FILES,
    "fs": KcmpType.FS,
    "sighand": KcmpType.SIGHAND,
    "io": KcmpType.IO,
    "sysvsem": KcmpType.SYSVSEM,
}


def _each_same(pid1: int, pid2: int) -> dict[str, bool]:
    return {name: fn(pid1, pid2) for name, fn in SAME_FUNCS.items()}


def _raw_sharing(pid1: int, pid2: int) -> Sharing:
    return Sharing(
        **{n: baseline.kcmp(pid1, pid2, t) is Order.EQUAL for n, t in TASK_TYPES.items()}
    )


@needs_kcmp
def test_sharing_with_self() -> None:
    everything = Sharing(vm=True, files=True, fs=True, sighand=True, io=True, sysvsem=True)
    assert kcmp_rs.sharing(ME, ME) == everything
    assert type(kcmp_rs.sharing(ME, ME)) is Sharing
    assert _each_same(ME, ME) == dict.fromkeys(SAME_FUNCS, True)


@needs_kcmp
def test_sharing_with_a_thread() -> None:
    """A thread id works as a pid: a thread shares everything with its process."""
    started = threading.Event()
    release = threading.Event()
    tid: list[int] = []

    def body() -> None:
        tid.append(threading.get_native_id())
        started.set()
        release.wait(30)

    t = threading.Thread(target=body)
    t.start()
    try:
        assert started.wait(30)
        assert tid[0] != ME
        got = kcmp_rs.sharing(ME, tid[0])
    finally:
        release.set()
        t.join()
    assert got == Sharing(vm=True, files=True, fs=True, sighand=True, io=True, sysvsem=True)


@needs_kcmp
def test_sharing_with_forked_children(spawn: Spawn) -> None:
    a = spawn()
    b = spawn()
    # Two fresh children: fork copies VM, FILES, FS, SIGHAND; neither has an I/O
    # context nor a SysV undo list, and two absent ones compare equal.
    nothing_but_absent = Sharing(
        vm=False, files=False, fs=False, sighand=False, io=True, sysvsem=True
    )
    assert kcmp_rs.sharing(a.pid, b.pid) == nothing_but_absent
    assert _each_same(a.pid, b.pid) == vars(nothing_but_absent)
    got = kcmp_rs.sharing(ME, a.pid)
    assert got == _raw_sharing(ME, a.pid)
    assert (got.vm, got.files, got.fs, got.sighand) == (False, False, False, False)
    # sysvsem depends on this process's past: creating a thread (CLONE_SYSVSEM)
    # allocates an undo list, which forked children do not get. Checked raw above.
    assert kcmp_rs.sharing(a.pid, a.pid) == Sharing(True, True, True, True, True, True)
    for t in TASK_TYPES.values():
        assert kcmp_rs.kcmp(a.pid, b.pid, t) is baseline.kcmp(a.pid, b.pid, t)


class _Sembuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


SEM_UNDO = 0x1000
IPC_PRIVATE = 0
IPC_RMID = 0
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}.get(platform.machine())


def _give_io_context() -> None:
    """ioprio_set(IOPRIO_WHO_PROCESS, self, best-effort level 4) allocates one."""
    assert _IOPRIO_SET is not None
    if libc.syscall(_IOPRIO_SET, 1, 0, (2 << 13) | 4) != 0:
        raise OSError(ctypes.get_errno(), "ioprio_set")


@needs_kcmp
@pytest.mark.skipif(_IOPRIO_SET is None, reason=f"no ioprio_set number for {platform.machine()}")
def test_same_io_tells_an_io_context_apart(spawn: Spawn) -> None:
    with_ctx = spawn(_give_io_context)
    fresh = spawn()
    assert kcmp_rs.same_io(with_ctx.pid, fresh.pid) is False
    assert kcmp_rs.same_io(fresh.pid, with_ctx.pid) is False
    assert kcmp_rs.same_io(with_ctx.pid, with_ctx.pid) is True
    assert kcmp_rs.sharing(with_ctx.pid, fresh.pid).io is False


@needs_kcmp
def test_same_sysvsem_tells_an_undo_list_apart(spawn: Spawn) -> None:
    semid = libc.semget(IPC_PRIVATE, 1, 0o600)
    if semid < 0:
        e = ctypes.get_errno()
        if e == errno.ENOSYS:
            pytest.skip("kernel built without CONFIG_SYSVIPC")
        raise OSError(e, "semget")

    def undo() -> None:
        op = _Sembuf(0, 1, SEM_UNDO)
        if libc.semop(semid, ctypes.byref(op), 1) != 0:
            raise OSError(ctypes.get_errno(), "semop")

    try:
        with_undo = spawn(undo)
        fresh = spawn()
        assert kcmp_rs.same_sysvsem(with_undo.pid, fresh.pid) is False
        assert kcmp_rs.same_sysvsem(with_undo.pid, with_undo.pid) is True
        assert kcmp_rs.sharing(fresh.pid, with_undo.pid).sysvsem is False
    finally:
        assert libc.semctl(semid, 0, IPC_RMID) == 0
