"""classify_files / classify_fds / classify_tasks across processes and threads that the
tests start themselves: fork-inherited fds, fds passed with SCM_RIGHTS, separate opens,
exited and zombie processes, threads, and clone(2) children sharing chosen resources."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _helpers import (
    canonical,
    fd_snapshot,
    libc,
    pairwise_groups,
    run_in_child,
    spawned,
    thread_count,
    zombie_child,
)
from conftest import Spawn
from kcmp_rs import KcmpType, Order, baseline

Ref = tuple[int, int]
TASK_TYPES = [
    KcmpType.VM,
    KcmpType.FILES,
    KcmpType.FS,
    KcmpType.SIGHAND,
    KcmpType.IO,
    KcmpType.SYSVSEM,
]


def brute_files(refs: Iterable[Ref]) -> list[tuple[Ref, ...]]:
    """The truth by brute force: ctypes kcmp on every pair."""
    return pairwise_groups(sorted(set(refs)))


def brute_tasks(pids: Iterable[int], ty: KcmpType) -> list[tuple[int, ...]]:
    unique = sorted(set(pids))
    groups: list[list[int]] = []
    for p in unique:
        for g in groups:
            if baseline.kcmp(p, g[0], ty) is Order.EQUAL:
                g.append(p)
                break
        else:
            groups.append([p])
    return [tuple(g) for g in groups]


@pytest.fixture
def tmpfile(tmp_path: Path) -> Path:
    p = tmp_path / "f"
    p.write_bytes(b"data")
    return p


@contextlib.contextmanager
def opened(*fds: int) -> Iterator[None]:
    try:
        yield
    finally:
        for fd in fds:
            os.close(fd)


# ---- fds across processes ----


def test_fork_inherited_and_separate_opens(spawn: Spawn, tmpfile: Path) -> None:
    me = os.getpid()
    r, w = os.pipe()
    f = os.open(tmpfile, os.O_RDONLY)
    with opened(r, w, f):

        def setup() -> dict[str, int]:
            return {
                "sep": os.open(tmpfile, os.O_RDONLY),  # same inode, new description
                "dup": os.dup(r),  # child-only fd number, inherited description
                "pipe": os.pipe()[0],
            }

        child = spawn(setup)
        c, d = child.pid, child.data
        refs = [(me, r), (me, w), (me, f), (c, r), (c, w), (c, f), (c, d["sep"]), (c, d["dup"])]
        refs.append((c, d["pipe"]))
        expect = canonical(
            [
                ((me, r), (c, r), (c, d["dup"])),
                ((me, w), (c, w)),
                ((me, f), (c, f)),
                ((c, d["sep"]),),
                ((c, d["pipe"]),),
            ]
        )
        assert brute_files(refs) == expect
        assert kcmp_rs.classify_files(refs) == expect
        assert kcmp_rs.classify_files(reversed(refs + refs), missing="skip") == expect

        # classify_fds on the child's pid, explicit fds and all of them.
        child_fds = [r, w, f, d["sep"], d["dup"], d["pipe"]]
        truth = baseline.partition_pairwise(c, child_fds)
        assert truth == sorted([(r, d["dup"]), (w,), (f,), (d["sep"],), (d["pipe"],)])
        assert kcmp_rs.classify_fds(c, child_fds) == truth
        by_kernel = kcmp_rs.classify_fds(c, child_fds, order="kernel")
        assert sorted(by_kernel) == truth
        for g, h in zip(by_kernel, by_kernel[1:]):
            assert kcmp_rs.kcmp(c, c, KcmpType.FILE, g[0], h[0]) is Order.LESS
        everything = kcmp_rs.open_fds(c)
        assert set(child_fds) <= set(everything)
        assert everything == sorted(int(n) for n in os.listdir(f"/proc/{c}/fd"))
        all_groups = kcmp_rs.classify_fds(c)
        assert sorted(x for g in all_groups for x in g) == everything
        assert all_groups == baseline.partition_pairwise(c, everything)

        # A fd the child does not have.
        missing_fd = max(everything) + 1000
        assert kcmp_rs.classify_fds(c, [*child_fds, missing_fd], missing="skip") == truth
        with pytest.raises(OSError) as info:
            kcmp_rs.classify_fds(c, [*child_fds, missing_fd])
        e: Any = info.value
        assert (e.errno, e.pid, e.fd) == (errno.EBADF, c, missing_fd)
        assert f"fd {missing_fd} is not open in process {c}" in str(e)
        with pytest.raises(OSError) as info:
            kcmp_rs.classify_files([(me, r), (c, missing_fd)])
        e = info.value
        assert (e.errno, e.pid, e.fd) == (errno.EBADF, c, missing_fd)
        assert kcmp_rs.classify_files([(me, r), (c, missing_fd)], missing="skip") == [((me, r),)]


def test_scm_rights_both_ways(spawn: Spawn, tmpfile: Path) -> None:
    me = os.getpid()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    mine = os.memfd_create("parent", 0)
    f = os.open(tmpfile, os.O_RDONLY)
    received: list[int] = []
    try:
        socket.send_fds(a, [b"p"], [mine])  # queued before the child reads it

        def setup() -> dict[str, int]:
            _, fds, _, _ = socket.recv_fds(b, 16, 4)
            (got,) = fds
            m = os.memfd_create("child", 0)
            sep = os.open(tmpfile, os.O_RDONLY)
            socket.send_fds(b, [b"c"], [m, sep])
            return {"got": got, "m": m, "sep": sep, "m2": os.memfd_create("other", 0)}

        child = spawn(setup)
        c, d = child.pid, child.data
        _, received, _, _ = socket.recv_fds(a, 16, 4)
        x, y = received
        refs = [
            (me, mine),
            (c, d["got"]),
            (me, x),
            (c, d["m"]),
            (me, y),
            (c, d["sep"]),
            (me, f),
            (c, f),
            (c, d["m2"]),
        ]
        expect = canonical(
            [
                ((me, mine), (c, d["got"])),
                ((me, x), (c, d["m"])),
                ((me, y), (c, d["sep"])),
                ((me, f), (c, f)),  # inherited through fork
                ((c, d["m2"]),),
            ]
        )
        assert brute_files(refs) == expect
        assert kcmp_rs.classify_files(refs) == expect
        assert kcmp_rs.classify_files(refs, missing="skip", allow_pidfd_getfd=True) == expect
        # Separate descriptions of one inode (my f and the child's own open) differ even
        # though fstat says the same file.
        assert os.fstat(y).st_ino == os.fstat(f).st_ino
        assert kcmp_rs.classify_fds(me, [f, y]) == [(min(f, y),), (max(f, y),)]
    finally:
        for fd in [mine, f, *received]:
            os.close(fd)
        a.close()
        b.close()


def test_exited_process(tmpfile: Path) -> None:
    me = os.getpid()
    r, w = os.pipe()
    with opened(r, w):
        with spawned(lambda: os.open(tmpfile, os.O_RDONLY)) as child:
            c, cf = child.pid, child.data
            assert kcmp_rs.classify_files([(me, r), (c, r)]) == canonical([[(me, r), (c, r)]])
        # Reaped: the pid no longer exists.
        assert not os.path.exists(f"/proc/{c}")
        refs = [(me, r), (c, r), (c, cf), (me, w)]
        assert kcmp_rs.classify_files(refs, missing="skip") == [((me, r),), ((me, w),)]
        with pytest.raises(ProcessLookupError) as info:
            kcmp_rs.classify_files(refs)
        e: Any = info.value
        assert (e.errno, e.pid) == (errno.ESRCH, c)
        assert f"process {c} does not exist" in str(e)
        for missing in ("raise", "skip"):
            with pytest.raises(ProcessLookupError) as info:
                kcmp_rs.classify_fds(c, missing=missing)
            assert getattr(info.value, "pid", None) == c
            with pytest.raises(ProcessLookupError):
                kcmp_rs.open_fds(c)
        with pytest.raises(ProcessLookupError):
            kcmp_rs.classify_fds(c, [r])
        for ty in TASK_TYPES:
            assert kcmp_rs.classify_tasks([me, c], ty, missing="skip") == [(me,)]
            with pytest.raises(ProcessLookupError) as info:
                kcmp_rs.classify_tasks([me, c], ty)
            assert getattr(info.value, "pid", None) == c


def test_exited_process_classify_fds_skip_still_raises() -> None:
    with spawned() as child:
        c = child.pid
    with pytest.raises(ProcessLookupError):
        kcmp_rs.classify_fds(c, [0, 1, 2], missing="skip")


def test_zombie_process(tmpfile: Path) -> None:
    """A child that exited but was not reaped: no fd table left."""
    me = os.getpid()
    r, w = os.pipe()
    with opened(r, w), zombie_child() as pid:
        refs = [(me, r), (pid, r), (me, w)]
        assert kcmp_rs.classify_files(refs, missing="skip") == [((me, r),), ((me, w),)]
        with pytest.raises(OSError) as info:
            kcmp_rs.classify_files(refs)
        e: Any = info.value
        assert type(e) is kcmp_rs.ProcessGoneError and e.errno == errno.ESRCH
        assert e.kind == "zombie"
        assert getattr(e, "pid", None) == pid
        assert f"process {pid} has exited and awaits reaping (a zombie)" in str(e)
        with pytest.raises(ProcessLookupError, match="a zombie"):
            kcmp_rs.classify_fds(pid, [r], missing="skip")
        with pytest.raises(ProcessLookupError, match="a zombie"):
            kcmp_rs.classify_fds(pid)
        # Two zombies' absent resources would compare equal: never grouped.
        with zombie_child() as other:
            for ty in TASK_TYPES:
                got = kcmp_rs.classify_tasks([other, me, pid], ty, missing="skip")
                assert got == [(me,)], ty
                with pytest.raises(ProcessLookupError) as info:
                    kcmp_rs.classify_tasks([other, me, pid], ty)
                zombie = getattr(info.value, "pid", None)
                assert zombie in (pid, other)
                assert "has exited and awaits reaping" in str(info.value)
            # The single calls: two zombies are not "sharing" anything.
            with pytest.raises(ProcessLookupError) as info:
                kcmp_rs.same_vm(pid, other)
            assert getattr(info.value, "pid", None) in (pid, other)
            assert "awaits reaping" in str(info.value)
            with pytest.raises(ProcessLookupError) as info:
                kcmp_rs.same_file(pid, 0, me, 0)
            assert getattr(info.value, "pid", None) == pid
            assert f"process {pid} has exited and awaits reaping" in str(info.value)


def test_package_fds_never_reported_cross_process() -> None:
    """When classifying another process first, the package holds a pidfd and its
    /proc/PID/fd directory at the lowest free numbers; those must never be reported as
    fds of the caller, with kcmp and with the pidfd_getfd fallback (whose copies also
    land on the lowest free numbers)."""
    with spawned(lambda: os.pipe()) as other:
        a = other.pid
        ra, wa = other.data

        def probe(disable: bool) -> dict[str, Any]:
            me = os.getpid()
            assert a < me
            if disable:
                kcmp_rs.disable_kcmp()
            before = {fd for fd, _ in fd_snapshot()}
            free = [fd for fd in range(max(before) + 8) if fd not in before][:6]
            n = free[0]
            ours = [(me, fd) for fd in free]  # where the package's own fds will land
            refs = [(a, ra), (a, wa), (a, 0), *ours]
            skip = kcmp_rs.classify_files(refs, missing="skip", allow_pidfd_getfd=True)
            try:
                kcmp_rs.classify_files(refs, allow_pidfd_getfd=True)
                raised: Any = None
            except OSError as e:
                raised = (e.errno, getattr(e, "pid", None), getattr(e, "fd", None))
            return {
                "me": me,
                "n": n,
                "skip": skip,
                "raised": raised,
                "leaked": sorted({fd for fd, _ in fd_snapshot()} - before),
            }

        for disable in (False, True):
            out = run_in_child(probe, disable).unwrap()
            me, n = out["me"], out["n"]
            reported = {r for g in out["skip"] for r in g}
            assert reported == {(a, ra), (a, wa), (a, 0)}, out
            assert out["raised"] == (errno.EBADF, me, n), out
            assert out["leaked"] == [], out


# ---- threads: their tids work as pids ----


@contextlib.contextmanager
def threads(count: int) -> Iterator[list[int]]:
    """``count`` live threads; yields their native ids; joins them on exit."""
    stop = threading.Event()
    tids: list[int] = []
    lock = threading.Lock()
    started = threading.Barrier(count + 1)

    def run() -> None:
        with lock:
            tids.append(threading.get_native_id())
        started.wait()
        stop.wait()

    ts = [threading.Thread(target=run) for _ in range(count)]
    for t in ts:
        t.start()
    try:
        started.wait(timeout=30)
        yield sorted(tids)
    finally:
        stop.set()
        for t in ts:
            t.join()


def test_threads_share_with_main(spawn: Spawn) -> None:
    me = os.getpid()
    r, w = os.pipe()
    child = spawn()  # forked before any thread starts; inherits r and w
    c = child.pid
    with opened(r, w), threads(3) as tids:
        assert all(t != me for t in tids)
        for ty in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND, KcmpType.SYSVSEM):
            got = kcmp_rs.classify_tasks([tids[2], me, *tids, me], ty)
            assert got == canonical([[me, *tids]]), ty
            assert got == brute_tasks([me, *tids], ty)
        for ty in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND):
            got = kcmp_rs.classify_tasks([c, *tids, me], ty)
            assert got == canonical([[me, *tids], [c]]), ty
        for ty in TASK_TYPES:
            assert kcmp_rs.classify_tasks([c, *tids, me], ty) == brute_tasks([c, me, *tids], ty)
        # A thread's fd table is the process's: (tid, fd) refs group with (pid, fd).
        refs = [(tids[0], r), (me, r), (tids[1], w), (me, w), (c, r)]
        expect = canonical([[(me, r), (tids[0], r), (c, r)], [(me, w), (tids[1], w)]])
        assert kcmp_rs.classify_files(refs) == expect == brute_files(refs)
        assert kcmp_rs.classify_fds(tids[0], [w, r]) == [(r,), (w,)]


def test_forked_child_shares_nothing_but_io_sysvsem_maybe(spawn: Spawn) -> None:
    me = os.getpid()
    c1 = spawn().pid
    c2 = spawn().pid
    for ty in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND):
        assert kcmp_rs.classify_tasks([c2, me, c1], ty) == sorted([(me,), (c1,), (c2,)])
    for ty in TASK_TYPES:
        got = kcmp_rs.classify_tasks([c2, me, c1, c1], ty)
        assert got == brute_tasks([me, c1, c2], ty)
        assert sorted(p for g in got for p in g) == sorted([me, c1, c2])


@pytest.mark.parametrize("ty", [KcmpType.FILE, KcmpType.EPOLL_TFD, 0, 7])
def test_tasks_refuse_fd_types(ty: int) -> None:
    with pytest.raises(ValueError, match=r"^type (FILE|EPOLL_TFD) "):
        kcmp_rs.classify_tasks([os.getpid()], ty)


def test_tasks_trivial() -> None:
    me = os.getpid()
    for ty in TASK_TYPES:
        assert kcmp_rs.classify_tasks([], ty) == []
        assert kcmp_rs.classify_tasks([me, me], ty) == [(me,)]
        assert kcmp_rs.classify_tasks(iter([me]), int(ty)) == [(me,)]


# ---- clone(2) children sharing chosen resources ----

CLONE_VM = 0x100
CLONE_FS = 0x200
CLONE_FILES = 0x400
CLONE_SIGHAND = 0x800

CLONE_NAMES = [
    ("VM", CLONE_VM),
    ("FS", CLONE_FS),
    ("FILES", CLONE_FILES),
    ("SIGHAND", CLONE_SIGHAND),
]
_CHILD_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


@contextlib.contextmanager
def cloned(flags: int) -> Iterator[int]:
    """A child made by glibc's clone(): it runs libc's pause() on a stack of ours (with
    CLONE_VM it shares our memory, so it must run no Python). Killed and reaped on exit."""
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"clone() stack handling not checked on {platform.machine()}")
    deadline = time.monotonic() + 2.0  # joined threads take a moment to leave /proc
    while thread_count() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    if thread_count() != 1:
        pytest.skip("a CLONE_VM child must start in a single-threaded process")
    size = 1 << 16
    stack = ctypes.create_string_buffer(size)
    top = (ctypes.addressof(stack) + size - 256) & ~0xF
    clone = libc.clone
    clone.restype = ctypes.c_int
    clone.argtypes = [_CHILD_FN, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    fn = ctypes.cast(libc.pause, _CHILD_FN)
    pid = clone(fn, ctypes.c_void_p(top), flags | signal.SIGCHLD, None)
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        del stack


@pytest.mark.parametrize(
    "flags",
    [
        CLONE_VM,
        CLONE_VM | CLONE_FILES,
        CLONE_VM | CLONE_FS,
        CLONE_VM | CLONE_SIGHAND,
        CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND,
        CLONE_FILES,
        CLONE_FS,
        CLONE_FS | CLONE_FILES,
        0,
    ],
    ids=lambda f: "|".join(n for n, b in CLONE_NAMES if f & b) or "none",
)
def test_clone_children_share_what_the_flags_say(flags: int) -> None:
    me = os.getpid()
    expected = {
        KcmpType.VM: bool(flags & CLONE_VM),
        KcmpType.FS: bool(flags & CLONE_FS),
        KcmpType.FILES: bool(flags & CLONE_FILES),
        KcmpType.SIGHAND: bool(flags & CLONE_SIGHAND),
    }
    r, w = os.pipe()
    with opened(r, w), cloned(flags) as c:
        for ty, shared in expected.items():
            got = kcmp_rs.classify_tasks([c, me], ty)
            assert got == canonical([[me, c]] if shared else [[me], [c]]), ty
            assert got == brute_tasks([me, c], ty)
        for ty in TASK_TYPES:
            assert kcmp_rs.classify_tasks([c, me, c], ty) == brute_tasks([me, c], ty)
        # The child's fds: inherited (or the very same table with CLONE_FILES).
        assert kcmp_rs.classify_files([(c, w), (me, r), (c, r), (me, w)]) == canonical(
            [[(me, r), (c, r)], [(me, w), (c, w)]]
        )
        late = os.open("/dev/null", os.O_RDONLY)
        with opened(late):
            by_file = kcmp_rs.classify_files([(c, late), (me, late)], missing="skip")
            if flags & CLONE_FILES:  # one fd table: the new fd is the child's too
                assert by_file == canonical([[(me, late), (c, late)]])
            else:
                assert by_file == [((me, late),)]


def test_clone_vm_and_threads_and_fork_together(spawn: Spawn) -> None:
    me = os.getpid()
    forked = spawn().pid
    with cloned(CLONE_VM | CLONE_FILES) as c, threads(2) as tids:
        pids = [forked, c, *tids, me]
        assert kcmp_rs.classify_tasks(pids, KcmpType.VM) == sorted(
            [tuple(sorted([me, c, *tids])), (forked,)]
        )
        assert kcmp_rs.classify_tasks(pids, KcmpType.FILES) == sorted(
            [tuple(sorted([me, c, *tids])), (forked,)]
        )
        assert kcmp_rs.classify_tasks(pids, KcmpType.SIGHAND) == sorted(
            [tuple(sorted([me, *tids])), (c,), (forked,)]
        )
        for ty in TASK_TYPES:
            assert kcmp_rs.classify_tasks(pids, ty) == brute_tasks(pids, ty)


def test_many_threads_beyond_the_pidfd_cap() -> None:
    """More tasks in one batch than the package holds pidfds for (128): the rest are
    guarded by their start time. Thread ids work as pids for tasks and for fds."""
    me = os.getpid()
    before = fd_snapshot()
    r, w = os.pipe()
    with opened(r, w), threads(150) as tids:
        for ty in (KcmpType.VM, KcmpType.FILES, KcmpType.FS, KcmpType.SIGHAND):
            assert kcmp_rs.classify_tasks([*tids, me], ty) == [tuple(sorted([me, *tids]))]
        refs = [(t, r) for t in tids] + [(t, w) for t in tids[::2]] + [(me, w)]
        assert kcmp_rs.classify_files(refs) == sorted(
            [tuple((t, r) for t in tids), tuple(sorted([(me, w)] + [(t, w) for t in tids[::2]]))]
        )
        assert kcmp_rs.classify_files(refs, missing="skip") == kcmp_rs.classify_files(refs)
    assert fd_snapshot() == before
