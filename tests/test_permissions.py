"""Permission: a child that dropped to uid/gid 65534 asks about a root process the test
started. The single calls raise PermissionError (EPERM) blaming that process, never
the caller, with the exact message and attributes, and it pickles; the raw syscall
says EPERM too. open_fds and the batch calls raise PermissionError naming it as well.
Needs root.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import kcmp_rs
from _checks import check_os_error, needs_kcmp, needs_root, outcome, unraise
from _helpers import ChildResult, drop_to_nobody, run_in_child
from conftest import Spawn
from kcmp_rs import KcmpType, baseline

# ---- the single calls ----


def _drop_and_compare(root_pid: int, fd: int) -> dict[str, Any]:
    """Runs as uid/gid 65534 in a child: every comparison with ``root_pid`` is denied."""
    drop_to_nobody()
    me = os.getpid()
    return {
        "me": me,
        "uid": (os.getuid(), os.geteuid()),
        "self": kcmp_rs.same_vm(me, me),
        "me_root": outcome(kcmp_rs.kcmp, me, root_pid, KcmpType.VM),
        "root_me": outcome(kcmp_rs.kcmp, root_pid, me, KcmpType.VM),
        "root_root": outcome(kcmp_rs.same_fs, root_pid, root_pid),
        "file": outcome(kcmp_rs.same_file, me, fd, root_pid, fd),
        "file_root_first": outcome(kcmp_rs.same_file, root_pid, fd, me, fd),
        "file_getfd": outcome(kcmp_rs.same_file, me, fd, root_pid, fd, allow_pidfd_getfd=True),
        "sharing": outcome(kcmp_rs.sharing, me, root_pid),
        "epoll": outcome(kcmp_rs.same_epoll_target, me, fd, root_pid, fd, fd),
        "baseline": outcome(baseline.kcmp, me, root_pid, KcmpType.VM),
    }


@needs_kcmp
@needs_root
def test_eperm_names_the_process_that_may_not_be_inspected(
    spawn: Spawn, pipe: tuple[int, int]
) -> None:
    root = spawn()  # root-owned, started by this test
    r, _ = pipe
    result: ChildResult[dict[str, Any]] = run_in_child(_drop_and_compare, root.pid, r)
    got = result.unwrap()
    assert got["uid"] == (65534, 65534)
    assert got["self"] is True
    assert got["me"] == result.pid
    detail = (
        f"process {root.pid} may not be inspected by this process "
        "(kcmp needs ptrace read access: the same uid, or CAP_SYS_PTRACE)"
    )
    for key in (
        "me_root",
        "root_me",
        "root_root",
        "file",
        "file_root_first",
        "file_getfd",
        "sharing",
        "epoll",
    ):
        e = unraise(got[key])
        assert getattr(e, "pid", None) != got["me"], f"{key}: the caller was blamed"
        check_os_error(e, kcmp_rs.ProcessAccessError, errno.EPERM, detail, root.pid, None)
    raw = unraise(got["baseline"])
    assert type(raw) is PermissionError and raw.args == (errno.EPERM, os.strerror(errno.EPERM))


# ---- every call, batches included ----


def _child_with_pipe() -> dict[str, int]:
    r, w = os.pipe()
    return {"r": r, "w": w}


def _as_nobody(target: int, fd: int) -> list[tuple[str, str, int | None, int | None, str]]:
    """Drops to uid/gid 65534, then asks about ``target``: (call, class, errno, pid, message)."""
    drop_to_nobody()
    me = os.getpid()
    calls: list[tuple[str, Callable[[], object]]] = [
        ("kcmp", lambda: kcmp_rs.kcmp(me, target, KcmpType.VM)),
        ("kcmp reversed", lambda: kcmp_rs.kcmp(target, me, KcmpType.FILES)),
        ("same_file", lambda: kcmp_rs.same_file(target, fd, target, fd)),
        ("same_vm", lambda: kcmp_rs.same_vm(me, target)),
        ("sharing", lambda: kcmp_rs.sharing(target, me)),
        ("open_fds", lambda: kcmp_rs.open_fds(target)),
        ("classify_fds", lambda: kcmp_rs.classify_fds(target)),
        ("classify_fds given", lambda: kcmp_rs.classify_fds(target, [fd])),
        ("classify_files", lambda: kcmp_rs.classify_files([(me, 0), (target, fd)])),
        ("classify_tasks", lambda: kcmp_rs.classify_tasks([me, target], KcmpType.VM)),
    ]
    seen: list[tuple[str, str, int | None, int | None, str]] = []
    for name, call in calls:
        try:
            value = call()
        except Exception as e:
            seen.append(
                (name, type(e).__name__, getattr(e, "errno", None), getattr(e, "pid", None), str(e))
            )
        else:
            seen.append((name, "returned", None, None, repr(value)))
    return seen


@needs_root
def test_permission_error_names_the_process(spawn: Spawn) -> None:
    target = spawn(_child_with_pipe)
    seen = run_in_child(_as_nobody, target.pid, target.data["r"]).unwrap()
    for name, cls, err, pid, message in seen:
        assert (cls, err, pid) == ("ProcessAccessError", errno.EPERM, target.pid), (name, message)
        assert str(target.pid) in message, (name, message)
