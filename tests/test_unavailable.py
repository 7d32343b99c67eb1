"""The single calls where kcmp(2) is refused, under a seccomp filter in a forked child
the way sandboxes refuse it (EPERM like Docker, ENOSYS like gVisor, or a filter that
kills): KcmpUnavailableError's errno, reason and message, and that it pickles;
same_file's exact fallbacks (fstat, F_DUPFD_QUERY or the epoll trick, pidfd_getfd
for another process's fds when allowed); a filter installed after the first,
successful use. The batch calls and support() without kcmp are in
``test_fallback.py``.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import Raised, assert_pickles, needs_kcmp, needs_seccomp, outcome, unraise
from _helpers import ChildResult, dupfd_query_works, fd_snapshot, libc, run_in_child
from _seccomp import KcmpAction, install_filter
from conftest import Spawn
from kcmp_rs import KcmpType, KcmpUnavailableError, Order, baseline

# ---- KcmpUnavailableError ----


def _sandboxed(
    action: KcmpAction, dupfd_query_errno: int | None, fd: int, other: int
) -> dict[str, Any]:
    """Runs in a child under the filter: what each call says when kcmp is refused."""
    install_filter(action, dupfd_query_errno)
    me = os.getpid()
    before = fd_snapshot()
    got = {
        "me": me,
        "kcmp": outcome(kcmp_rs.kcmp, me, me, KcmpType.VM),
        "kcmp_file": outcome(kcmp_rs.kcmp, me, me, KcmpType.FILE, fd, fd),
        "same_vm": outcome(kcmp_rs.same_vm, me, me),
        "sharing": outcome(kcmp_rs.sharing, me, me),
        "epoll": outcome(kcmp_rs.same_epoll_target, me, fd, me, fd, fd),
        "remote": outcome(kcmp_rs.same_file, me, fd, other, fd),
        "baseline": outcome(baseline.kcmp, me, me, KcmpType.VM),
    }
    got["leaked"] = sorted(fd_snapshot() - before)
    return got


def _check_unavailable(e: BaseException, err: int, must_mention: tuple[str, ...]) -> None:
    assert type(e) is KcmpUnavailableError, repr(e)
    assert isinstance(e, KcmpUnavailableError)
    assert e.errno == err
    assert e.strerror == f"{os.strerror(err)}: {e.reason}"
    assert str(e) == f"[Errno {err}] {e.strerror}"
    for word in must_mention:
        assert word in e.reason, (word, e.reason)
    assert e.pid is None and e.fd is None
    assert e.undecided == ()
    assert_pickles(e)


@needs_kcmp
@needs_seccomp
@pytest.mark.parametrize(
    ("err", "words"),
    [
        (errno.EPERM, ("seccomp", "SYS_PTRACE")),
        (errno.ENOSYS, ("CONFIG_KCMP",)),
    ],
    ids=["EPERM", "ENOSYS"],
)
def test_kcmp_unavailable_under_seccomp(
    spawn: Spawn, pipe: tuple[int, int], err: int, words: tuple[str, ...]
) -> None:
    other = spawn()
    r, _ = pipe
    result: ChildResult[dict[str, Any]] = run_in_child(
        _sandboxed, ("errno", err), None, r, other.pid
    )
    got = result.unwrap()
    for key in ("kcmp", "kcmp_file", "same_vm", "sharing", "epoll"):
        _check_unavailable(unraise(got[key]), err, words)
    # Another process's fd cannot be compared without kcmp unless pidfd_getfd is allowed.
    remote = unraise(got["remote"])
    assert type(remote) is KcmpUnavailableError
    assert isinstance(remote, KcmpUnavailableError)
    assert remote.errno == err
    # Both fds are named (the sandboxed child's own and the other process's).
    assert len(remote.undecided) == 2 and (other.pid, r) in remote.undecided
    assert f"fd {r} of process {other.pid}" in str(remote)
    assert_pickles(remote)
    raw = unraise(got["baseline"])
    assert isinstance(raw, OSError) and raw.errno == err
    assert got["leaked"] == []


# ---- what same_file decides without kcmp ----


def _fallbacks(
    dupfd_query_errno: int | None, path: str, other: int, pr: int, pw: int
) -> dict[str, Any]:
    """Under an EPERM filter: what same_file can still decide without kcmp.

    ``pr``/``pw``: a pipe this child and ``other`` both inherited.
    """
    install_filter(("errno", errno.EPERM), dupfd_query_errno)
    me = os.getpid()
    r, w = os.pipe()
    r2 = os.dup(r)
    f = os.open(path, os.O_RDONLY)
    f2 = os.dup(f)
    g = os.open(path, os.O_RDONLY)
    o = os.open(path, os.O_PATH)
    o2 = os.dup(o)
    before = fd_snapshot()
    got = {
        "me": me,
        "fds": {"f": f, "f2": f2, "g": g, "o": o, "o2": o2},
        "pipe_dup": outcome(kcmp_rs.same_file, me, r, me, r2),
        "pipe_ends": outcome(kcmp_rs.same_file, me, r, me, w),
        "file_dup": outcome(kcmp_rs.same_file, me, f, me, f2),
        "file_reopen": outcome(kcmp_rs.same_file, me, f, me, g),
        "file_pipe": outcome(kcmp_rs.same_file, me, f, me, r),
        "opath_dup": outcome(kcmp_rs.same_file, me, o, me, o2),
        "remote_same": outcome(kcmp_rs.same_file, me, pr, other, pr, allow_pidfd_getfd=True),
        "remote_other_end": outcome(kcmp_rs.same_file, other, pw, me, pr, allow_pidfd_getfd=True),
        "remote_both": outcome(kcmp_rs.same_file, other, pr, other, pr, allow_pidfd_getfd=True),
        "remote_refused": outcome(kcmp_rs.same_file, me, pr, other, pr),
    }
    got["leaked"] = sorted(fd_snapshot() - before)
    return got


@needs_kcmp
@needs_seccomp
@pytest.mark.parametrize(
    "dupfd_query_errno", [None, errno.EINVAL], ids=["F_DUPFD_QUERY", "epoll-trick"]
)
def test_same_file_falls_back_without_kcmp(
    spawn: Spawn, tmp_path: Path, pipe: tuple[int, int], dupfd_query_errno: int | None
) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    pr, pw = pipe
    other = spawn()  # inherits the pipe
    result: ChildResult[dict[str, Any]] = run_in_child(
        _fallbacks, dupfd_query_errno, str(path), other.pid, pr, pw
    )
    got = result.unwrap()
    me, fds = got["me"], got["fds"]
    # fstat tells different inodes apart; F_DUPFD_QUERY, the epoll or lock test the rest.
    assert got["pipe_dup"] is True
    assert got["pipe_ends"] is False  # one inode, two descriptions
    assert got["file_pipe"] is False
    # Another process's fds: copied with pidfd_getfd when allowed, refused otherwise.
    assert got["remote_same"] is True
    assert got["remote_other_end"] is False
    assert got["remote_both"] is True
    refused = unraise(got["remote_refused"])
    assert isinstance(refused, KcmpUnavailableError)
    assert refused.errno == errno.EPERM and refused.undecided == tuple(
        sorted([(other.pid, pr), (me, pr)])
    )
    # F_DUPFD_QUERY, or the lock test (regular files refuse epoll).
    assert got["file_dup"] is True
    assert got["file_reopen"] is False
    if dupfd_query_errno is not None or not dupfd_query_works():
        # O_PATH fds take no locks and refuse epoll: nothing exact is left for them.
        e = unraise(got["opath_dup"])
        assert type(e) is KcmpUnavailableError and isinstance(e, KcmpUnavailableError)
        o, o2 = fds["o"], fds["o2"]
        assert e.errno == errno.EPERM
        assert e.undecided == ((me, o), (me, o2))
        assert e.pid is None and e.fd is None
        assert e.strerror == (
            f"{os.strerror(errno.EPERM)}: no exact method could decide "
            f"fd {o} of process {me}, fd {o2} of process {me}: {e.reason}"
        )
        assert "seccomp" in e.reason
        assert_pickles(e)
    assert got["leaked"] == []


# ---- a filter installed late; a filter that kills ----


def _filter_after_first_use(fd: int) -> dict[str, Any]:
    me = os.getpid()
    before = kcmp_rs.kcmp(me, me, KcmpType.FILE, fd, fd)  # probes: usable
    install_filter(("errno", errno.EPERM))
    return {
        "before": before,
        "after": outcome(kcmp_rs.same_vm, me, me),
        "again": outcome(kcmp_rs.same_vm, me, me),
    }


@needs_kcmp
@needs_seccomp
def test_filter_installed_after_first_use(pipe: tuple[int, int]) -> None:
    got: dict[str, Any] = run_in_child(_filter_after_first_use, pipe[0]).unwrap()
    assert got["before"] is Order.EQUAL
    for key in ("after", "again"):
        _check_unavailable(unraise(got[key]), errno.EPERM, ("seccomp",))


def _killed_on_kcmp() -> None:
    # No core dump from the SIGSYS: not to a file, nor to a core_pattern pipe.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    install_filter(("kill",))
    me = os.getpid()
    baseline.kcmp(me, me, KcmpType.VM)


@needs_seccomp
def test_kill_filter_kills_the_child() -> None:
    result = run_in_child(_killed_on_kcmp)
    assert result.killed_by == signal.SIGSYS
    assert not result.returned and result.error is None


# ---- out of fds: never a capability answer ----


def _fill_fds(spare: int) -> list[int]:
    """Lowers the soft RLIMIT_NOFILE to a little above what is open, then opens
    /dev/null until EMFILE, keeping ``spare`` fds free. Returns the fds opened."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(fd_snapshot()) + 16, hard))
    held = []
    while True:
        try:
            held.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            assert e.errno == errno.EMFILE, e
            break
    for fd in held[-spare:] if spare else []:
        os.close(fd)
    return held[: len(held) - spare]


def _at_the_limit(other: int, fds: list[int]) -> dict[str, Any]:
    """In a child: support() and batches with 0-3 fds to spare, then with fds freed."""
    refs = [(other, fd) for fd in fds]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    got: dict[str, Any] = {"batches": []}
    held = _fill_fds(0)
    got["starved_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    got["starved"] = outcome(kcmp_rs.support, refresh=True)
    for spare in range(4):
        for fd in held[len(held) - spare :]:
            os.close(fd)
        del held[len(held) - spare :]
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        for name, call in (
            ("files", lambda: kcmp_rs.classify_files(refs)),
            ("fds", lambda: kcmp_rs.classify_fds(other, fds)),
            ("open_fds", lambda: kcmp_rs.open_fds(other)),
        ):
            got["batches"].append((spare, limit, name, outcome(call)))
        for fd in held:
            os.close(fd)
        held = _fill_fds(0)
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    got["later"] = kcmp_rs.support()
    got["exact"] = kcmp_rs.classify_files(refs)
    return got


def _check_emfile(e: BaseException, limit: int, other: int) -> None:
    """An EMFILE names the limit and the fix, and the process it was about."""
    assert isinstance(e, OSError) and e.errno == errno.EMFILE, repr(e)
    text = str(e)
    assert f"this process has {limit} fds open, its limit (RLIMIT_NOFILE soft)" in text, text
    assert text.endswith("raise it (ulimit -n, resource.setrlimit) or close fds"), text
    if getattr(e, "pid", None) == other:
        assert f"/proc/{other}/" in text or f"process {other}" in text, text


@needs_kcmp
def test_running_out_of_fds_is_never_cached_and_names_the_limit(spawn: Spawn) -> None:
    """A child runs out of fds (RLIMIT_NOFILE lowered): support()'s probes and batches
    at the limit either answer exactly or raise EMFILE naming the limit and the fix;
    once fds are free, support() reports the real capabilities and batches answer."""

    def setup() -> list[int]:
        r, w = os.pipe()
        return [r, w, os.dup(r), os.dup(w), os.dup(r)]

    child = spawn(setup)
    fds: list[int] = child.data
    truth = kcmp_rs.classify_files([(child.pid, fd) for fd in fds])
    expect = {"files": truth, "fds": [tuple(fd for _, fd in g) for g in truth]}
    got = run_in_child(_at_the_limit, child.pid, fds).unwrap()
    # Out of fds, the probes cannot run: support() says so instead of "absent".
    starved = got["starved"]
    assert isinstance(starved, Raised), starved
    _check_emfile(unraise(starved), got["starved_limit"], child.pid)
    later = got["later"]
    assert (later.kcmp, later.pidfd_getfd) == (True, True), later
    assert later.dupfd_query == dupfd_query_works(), later
    assert got["exact"] == truth
    counts = {"answered": 0, "EMFILE": 0}
    for spare, limit, name, result in got["batches"]:
        if isinstance(result, Raised):
            print(f"\n{name}, {spare} spare: {result.exc}")
            _check_emfile(unraise(result), limit, child.pid)
            counts["EMFILE"] += 1
        elif name == "open_fds":
            assert set(fds) <= set(result), (spare, result)
            counts["answered"] += 1
        else:
            assert result == expect[name], (spare, name, result)
            counts["answered"] += 1
    assert counts["EMFILE"] > 0, counts
    print(f"\nat the fd limit: {counts}")
