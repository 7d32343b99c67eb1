"""The lock rung: files that refuse epoll, told apart by an OFD lock, without kcmp and
without F_DUPFD_QUERY (a container on a kernel before 6.10).

Each scenario runs in a forked child under a seccomp filter that refuses kcmp (EPERM,
as Docker's profile does) and F_DUPFD_QUERY (EINVAL, as kernels before 6.10 answer);
the truth comes from kcmp in this process before the fork. Besides the answers, every
scenario checks what the rung must leave as it found it: the locks the process and
other descriptions hold (OFD and POSIX), and no lock of its own.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_root, needs_seccomp
from _fallback_helpers import FdMix, Outcome, attempt
from _helpers import canonical, libc, run_in_child
from _seccomp import install_filter

_HERE = kcmp_rs.support()
pytestmark = [
    needs_seccomp,
    pytest.mark.skipif(not _HERE.kcmp, reason=f"kcmp unusable here: {_HERE.reason}"),
]

_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
F_OFD_GETLK = 36
F_OFD_SETLK = 37
# struct flock: l_type, l_whence, l_start, l_len, l_pid (native layout, padded).
_FLOCK = struct.Struct("hhqqi4x")


def ofd_lock(fd: int, kind: int, start: int = 0, length: int = 0) -> None:
    """An OFD lock owned by ``fd``'s description (``length`` 0: to the end)."""
    fcntl.fcntl(fd, F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))


def lock_in_way(fd: int, start: int = 0, length: int = 0) -> tuple[int, int, int, int]:
    """(type, start, len, pid) of the first lock another owner holds that a write lock
    through ``fd`` would meet; type F_UNLCK when there is none."""
    raw = fcntl.fcntl(fd, F_OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0))
    kind, _, got_start, got_len, pid = _FLOCK.unpack(raw)
    return kind, got_start, got_len, pid


def lock_lines(fd: int) -> list[str]:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return [line.split(None, 2)[2] for line in f if line.startswith("lock:")]


def block_kcmp_and_dupfd_query() -> None:
    install_filter(("errno", errno.EPERM), dupfd_query_errno=errno.EINVAL)
    s = kcmp_rs.support()
    assert not s.kcmp and not s.dupfd_query, s


@pytest.fixture
def files(fd_leak_check: None) -> Iterator[FdMix]:
    """The standard mix (pipes, sockets, regular files, /dev/null) and one more file
    opened read-only, write-only and read-write, twice each, plus a dup of each."""
    m = FdMix.standard()
    m.regular_in_modes("modes")
    try:
        yield m
    finally:
        m.close()


def scratch_file(mix: FdMix, name: str) -> str:
    path = mix.path(name)
    with open(path, "wb") as f:
        f.write(b"kcmp_rs")
    return path


def test_files_that_refuse_epoll_are_decided_exactly(files: FdMix) -> None:
    me = os.getpid()
    fds = files.fd_list()
    truth = kcmp_rs.classify_fds(me, fds)
    pairs = [(x, y) for i, x in enumerate(fds) for y in fds[i + 1 :]]
    same_truth = [kcmp_rs.same_file(me, x, me, y) for x, y in pairs]

    def child() -> dict[str, Any]:
        me = os.getpid()  # the fds are inherited under the same numbers
        block_kcmp_and_dupfd_query()
        return {
            "me": me,
            "fds": attempt(kcmp_rs.classify_fds, me, fds),
            "files": attempt(kcmp_rs.classify_files, [(me, fd) for fd in reversed(fds)]),
            "pairs": [attempt(kcmp_rs.same_file, me, x, me, y) for x, y in pairs],
            "locks": {fd: lock_lines(fd) for fd in fds},
        }

    out = run_in_child(child).unwrap()
    me = out["me"]
    for what in ("fds", "files"):
        o: Outcome = out[what]
        assert o.ok and not o.leaked and not o.lost, o.describe()
    assert out["fds"].value == truth
    assert canonical(out["files"].value) == canonical([[(me, fd) for fd in g] for g in truth])
    for (x, y), o, same in zip(pairs, out["pairs"], same_truth):
        assert o.ok and o.value is same, (x, y, o.describe())
    assert out["locks"] == {fd: [] for fd in fds}, "the rung left a lock behind"


def test_locks_in_the_way_leave_the_pair_undecided_and_untouched(files: FdMix) -> None:
    """No rung decides O_PATH fds, or a file where a lock covers the rung's byte: its own
    (a whole-file OFD lock) or another owner's (a POSIX lock of this process, an OFD lock
    of another description). Each is named; every lock is still held afterwards."""
    me = os.getpid()
    mix_fds = files.fd_list()
    truth = kcmp_rs.classify_fds(me, mix_fds)
    paths = {name: scratch_file(files, name) for name in ("opath", "held", "posix")}

    def child() -> dict[str, Any]:
        opath = [os.open(paths["opath"], os.O_PATH | os.O_CLOEXEC) for _ in range(2)]
        opath.append(os.dup(opath[0]))
        held = [os.open(paths["held"], os.O_RDWR | os.O_CLOEXEC) for _ in range(2)]
        held.append(os.dup(held[0]))
        ofd_lock(held[0], fcntl.F_WRLCK)  # the description's own, whole file
        posix = [os.open(paths["posix"], os.O_RDWR | os.O_CLOEXEC) for _ in range(2)]
        posix.append(os.dup(posix[0]))
        fcntl.lockf(posix[0], fcntl.LOCK_EX)  # this process's, whole file
        me = os.getpid()
        stuck = opath + held + posix
        block_kcmp_and_dupfd_query()
        out = {
            "me": me,
            "stuck": stuck,
            "all": attempt(kcmp_rs.classify_fds, me, mix_fds + stuck),
            "pair": attempt(kcmp_rs.same_file, me, held[0], me, held[1]),
            "mix": attempt(kcmp_rs.classify_fds, me, mix_fds),
            "held_lines": lock_lines(held[0]),
            # Seen through a fresh description: both locks, owners unchanged.
            "held_seen": lock_in_way(os.open(paths["held"], os.O_RDONLY | os.O_CLOEXEC)),
            "posix_seen": lock_in_way(os.open(paths["posix"], os.O_RDONLY | os.O_CLOEXEC)),
        }
        return out

    out = run_in_child(child).unwrap()
    me, stuck = out["me"], out["stuck"]
    o: Outcome = out["all"]
    assert o.error == "KcmpUnavailableError" and o.errno == errno.EPERM, o.describe()
    assert sorted(o.undecided) == sorted((me, fd) for fd in stuck), o.undecided
    for fd in sorted(stuck)[:8]:
        assert f"fd {fd} of process {me}" in o.message, o.message
    assert f"and {len(stuck) - 8} more" in o.message, o.message
    pair: Outcome = out["pair"]
    assert pair.error == "KcmpUnavailableError", pair.describe()
    assert sorted(pair.undecided) == [(me, stuck[3]), (me, stuck[4])], pair.undecided
    assert out["mix"].ok and out["mix"].value == truth, out["mix"].describe()
    assert len(out["held_lines"]) == 1 and out["held_lines"][0].split()[-2:] == ["0", "EOF"]
    assert out["held_seen"] == (fcntl.F_WRLCK, 0, 0, -1), out["held_seen"]
    assert out["posix_seen"][:3] == (fcntl.F_WRLCK, 0, 0), out["posix_seen"]
    assert out["posix_seen"][3] != -1, "a POSIX lock names its process"


def test_posix_locks_survive_every_rung(files: FdMix) -> None:
    """A POSIX lock is dropped by any close of any fd of its file in the process, so no
    rung may dup and close a file: this process's lock on the first bytes stays, and the
    pair is still decided (the lock is not on the rung's byte)."""
    ro0, ro1, rw0 = (files.fds[f"modes.{n}"] for n in ("ro.0", "ro.1", "rw.0"))

    def child() -> dict[str, Any]:
        me = os.getpid()
        fcntl.lockf(rw0, fcntl.LOCK_EX, 4, 0)
        block_kcmp_and_dupfd_query()
        answers = [
            attempt(kcmp_rs.same_file, me, ro0, me, ro1),
            attempt(kcmp_rs.same_file, me, rw0, me, files.fds["modes.rw.0+"]),
            attempt(kcmp_rs.classify_fds, me, files.fd_list()),
        ]
        seen = lock_in_way(os.open(files.path("modes"), os.O_RDONLY | os.O_CLOEXEC), 0, 4)
        return {"answers": answers, "seen": seen, "pid": me}

    out = run_in_child(child).unwrap()
    first, second, batch = out["answers"]
    assert first.ok and first.value is False, first.describe()
    assert second.ok and second.value is True, second.describe()
    assert batch.ok, batch.describe()
    assert out["seen"] == (fcntl.F_WRLCK, 0, 4, out["pid"]), "the POSIX lock was dropped"


def _on_overlayfs(root: str) -> dict[str, Any]:
    """In a private mount namespace: an overlayfs (a container's root filesystem), a file
    on it opened twice and dup'ed, compared with kcmp and F_DUPFD_QUERY refused."""
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    if libc.unshare(_CLONE_NEWNS) != 0:
        return {"skip": f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}"}
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    # On a tmpfs of its own: the directory given may itself be on an overlayfs (a
    # container's, or a kernel-test guest's /tmp), where an upper directory cannot be.
    if libc.mount(b"tmpfs", root.encode(), b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), f"mounting a tmpfs on {root}")
    dirs = {d: os.path.join(root, d) for d in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        os.mkdir(d)
    with open(os.path.join(dirs["lower"], "f"), "wb") as f:
        f.write(b"kcmp_rs")
    opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    if libc.mount(b"overlay", dirs["merged"].encode(), b"overlay", 0, opts.encode()) != 0:
        return {"skip": f"mounting an overlayfs: {os.strerror(ctypes.get_errno())}"}
    path = os.path.join(dirs["merged"], "f")
    a, b = (os.open(path, os.O_RDONLY | os.O_CLOEXEC) for _ in range(2))
    a2 = os.dup(a)
    with open("/proc/self/mountinfo") as f:
        fstype = [ln.split(" - ")[1].split()[0] for ln in f if f" {dirs['merged']} " in ln]
    me = os.getpid()
    block_kcmp_and_dupfd_query()
    return {
        "fstype": fstype,
        "apart": kcmp_rs.same_file(me, a, me, b),
        "dup": kcmp_rs.same_file(me, a, me, a2),
        "groups": kcmp_rs.classify_fds(me, [a, b, a2]),
        "locks": [lock_lines(fd) for fd in (a, b)],
        "want": [(a, a2), (b,)],
    }


@needs_root
def test_files_on_overlayfs_are_decided(tmp_path: Any) -> None:
    """Containers run on overlayfs, whose locks the overlay keeps on its own inodes."""
    got = run_in_child(_on_overlayfs, str(tmp_path)).unwrap()
    if "skip" in got:
        pytest.skip(got["skip"])
    assert got["fstype"] == ["overlay"], got
    assert got["apart"] is False and got["dup"] is True, got
    assert got["groups"] == got["want"], got
    assert got["locks"] == [[], []]
