"""kcmp_rs where kcmp(2) is unusable: support(), the fallback ladder, disable_kcmp.

Every scenario runs in a forked child (or, for KCMP_RS_NO_KCMP, a subprocess) that
installs a seccomp filter before calling the package, the way sandboxes block kcmp:
EPERM (Docker, podman), ENOSYS (gVisor with CAP_SYS_PTRACE, kernels without
CONFIG_KCMP), EPERM with F_DUPFD_QUERY refused too (a kernel before 6.10: the epoll
rung), and disable_kcmp() under a filter that kills on kcmp (old firejail). The child
reports each call as data (``Outcome``); the test process computes the truth with
kcmp before the fork, checks the child's exit status and compares.
"""

from __future__ import annotations

import errno
import json
import os
import random
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_seccomp
from _fallback_helpers import FdMix, Outcome, attempt
from _helpers import (
    ChildProcess,
    canonical,
    describe_status,
    fd_snapshot,
    pairwise_groups,
    run_in_child,
)
from _seccomp import install_filter
from kcmp_rs import KcmpType, KcmpUnavailableError, Support

# The truth comes from kcmp in this process, before any filter.
_HERE = kcmp_rs.support()
pytestmark = [
    needs_seccomp,
    pytest.mark.skipif(not _HERE.kcmp, reason=f"kcmp unusable here: {_HERE.reason}"),
]

_UNAVAILABLE = f"{KcmpUnavailableError.__module__}.{KcmpUnavailableError.__qualname__}"
POLICY_WORDS = ("seccomp", "SYS_PTRACE")
NOSYS_WORDS = ("CONFIG_KCMP",)
DISABLED_WORDS = ("disabled by configuration", "KCMP_RS_NO_KCMP")

_TESTS_DIR = Path(__file__).resolve().parent
_HELPERS_SCRIPT = _TESTS_DIR / "_fallback_helpers.py"


# ---- the ways kcmp is made unusable ----


@dataclass(frozen=True)
class Blocker:
    """How a child makes kcmp unusable, and what the package must then say."""

    name: str
    errno: int
    words: tuple[str, ...]
    kcmp_action: tuple[str, int] | tuple[str]
    dupfd_query_errno: int | None = None
    disable: bool = False

    def install(self) -> None:
        if self.disable:
            kcmp_rs.disable_kcmp()
        install_filter(self.kcmp_action, self.dupfd_query_errno)

    @property
    def dupfd_query(self) -> bool:
        """Whether F_DUPFD_QUERY works in the child."""
        return _HERE.dupfd_query and self.dupfd_query_errno is None


EPERM = Blocker("eperm", errno.EPERM, POLICY_WORDS, ("errno", errno.EPERM))
ENOSYS = Blocker("enosys", errno.ENOSYS, NOSYS_WORDS, ("errno", errno.ENOSYS))
EPOLL = Blocker(
    "eperm-no-dupfd-query",
    errno.EPERM,
    POLICY_WORDS,
    ("errno", errno.EPERM),
    dupfd_query_errno=errno.EINVAL,
)
# disable_kcmp() under a filter that kills on kcmp: a kcmp issued anyway is SIGSYS.
DISABLED = Blocker("disabled-kill", errno.EPERM, DISABLED_WORDS, ("kill",), disable=True)
BLOCKERS = [EPERM, ENOSYS, EPOLL, DISABLED]
blockers = pytest.mark.parametrize("blocker", BLOCKERS, ids=[b.name for b in BLOCKERS])


def in_child(func: Callable[[], Any]) -> Any:
    """Runs ``func`` in a forked child; its value, after checking it exited cleanly."""
    return run_in_child(func).unwrap()


# ---- checks on outcomes ----


def assert_no_fd_change(o: Outcome, what: str) -> None:
    assert not o.leaked, f"{what} leaked fds {o.leaked} ({o.describe()})"
    assert not o.lost, f"{what} closed fds of ours {o.lost} ({o.describe()})"


def assert_value(o: Outcome, expected: Any, what: str) -> None:
    assert o.ok, f"{what}: {o.describe()}"
    assert o.value == expected, f"{what}: {o.value!r} != {expected!r}"
    assert_no_fd_change(o, what)


def assert_unavailable(o: Outcome, blocker: Blocker, what: str) -> None:
    """KcmpUnavailableError with the blocker's errno, and a reason naming cause and fix."""
    assert o.error == "KcmpUnavailableError", f"{what}: {o.describe()}"
    assert _UNAVAILABLE in o.classes and "builtins.OSError" in o.classes, o.classes
    assert o.errno == blocker.errno, f"{what}: {o.describe()}"
    for word in blocker.words:
        assert word in o.reason, f"{what}: reason {o.reason!r} lacks {word!r}"
        assert word in o.message, f"{what}: message {o.message!r} lacks {word!r}"
    assert_no_fd_change(o, what)


def assert_names_undecided(o: Outcome) -> None:
    """The message names the undecided refs (the first eight, then a count)."""
    shown = sorted(o.undecided)[:8]
    for pid, fd in shown:
        assert f"fd {fd} of process {pid}" in o.message, (pid, fd, o.message)
    if len(o.undecided) > 8:
        assert f"and {len(o.undecided) - 8} more" in o.message, o.message


def assert_fd_order(groups: Sequence[Sequence[Any]]) -> None:
    """order="fd": each group ascending, groups by their smallest item."""
    assert [list(g) for g in groups] == [list(g) for g in canonical(groups)], groups


def check_support(s: Support, blocker: Blocker) -> None:
    assert s.kcmp is False, s
    for word in blocker.words:
        assert word in s.reason, f"reason {s.reason!r} lacks {word!r}"
    assert s.dupfd_query is blocker.dupfd_query, s
    assert s.pidfd_getfd is _HERE.pidfd_getfd, s


# ---- fixtures ----


@pytest.fixture
def mix(fd_leak_check: None) -> Iterator[FdMix]:
    """The standard fd mix in this process (children inherit it); closed afterwards."""
    m = FdMix.standard()
    try:
        yield m
    finally:
        m.close()


def truth_of_fds(fds: Sequence[int]) -> list[tuple[int, ...]]:
    """classify_fds through kcmp in this process, checked against pairwise same_file."""
    me = os.getpid()
    groups = kcmp_rs.classify_fds(me, fds)
    brute = pairwise_groups([(me, fd) for fd in fds], lambda a, b: kcmp_rs.same_file(*a, *b))
    assert canonical([[(me, fd) for fd in g] for g in groups]) == brute
    assert kcmp_rs.support().kcmp, "the truth must come from kcmp"
    return groups


# ---- support() ----


@blockers
def test_support_names_cause_and_fix_in_a_forked_child(blocker: Blocker) -> None:
    assert kcmp_rs.support().kcmp  # probed usable here; the child must not inherit that

    def child() -> tuple[Support, Support]:
        blocker.install()
        return kcmp_rs.support(), kcmp_rs.support(refresh=True)

    first, refreshed = in_child(child)
    check_support(first, blocker)
    assert refreshed == first
    assert kcmp_rs.support().kcmp  # nothing leaked back into this process


def test_support_is_probed_again_in_a_grandchild() -> None:
    def grandchild() -> Support:
        EPERM.install()
        return kcmp_rs.support()

    def child() -> tuple[Support, Support, Support]:
        before = kcmp_rs.support()  # a fresh probe in this child: usable
        below = run_in_child(grandchild).unwrap()
        return before, below, kcmp_rs.support()

    before, below, after = in_child(child)
    assert before.kcmp and before.reason == ""
    check_support(below, EPERM)
    assert after.kcmp, "the grandchild's filter is not ours"


def test_support_in_a_grandchild_of_a_filtered_child() -> None:
    def child() -> tuple[Support, Support]:
        ENOSYS.install()
        mine = kcmp_rs.support()
        below = run_in_child(kcmp_rs.support).unwrap()
        return mine, below

    mine, below = in_child(child)
    check_support(mine, ENOSYS)
    check_support(below, ENOSYS)


def test_disable_kcmp_survives_fork() -> None:
    def grandchild() -> Support:
        install_filter(("kill",))
        return kcmp_rs.support(refresh=True)

    def child() -> tuple[Support, Support, Support]:
        kcmp_rs.disable_kcmp()
        below = run_in_child(grandchild).unwrap()
        return kcmp_rs.support(), below, kcmp_rs.support(refresh=True)

    mine, below, refreshed = in_child(child)
    for s in (mine, below, refreshed):
        check_support(s, DISABLED)


@pytest.mark.parametrize("blocker", [EPERM, ENOSYS], ids=["eperm", "enosys"])
@pytest.mark.parametrize("first_call", ["kcmp", "same_vm", "classify_tasks", "same_file"])
def test_filter_installed_after_a_successful_probe(
    blocker: Blocker, first_call: str, mix: FdMix
) -> None:
    """The cached "usable" is stale once a filter goes on: the first kcmp call finds
    out (raising, or for same_file falling back to an exact answer) and support()
    then reports the cause without refresh=True."""
    a, a_dup, b = mix.fds["p1.r"], mix.fds["p1.r+"], mix.fds["p1.w"]

    def child() -> dict[str, Any]:
        me = os.getpid()
        out: dict[str, Any] = {"probe": kcmp_rs.support()}
        out["truth_all"] = kcmp_rs.classify_fds(me)  # every open fd, through kcmp
        blocker.install()
        calls: dict[str, Callable[[], Any]] = {
            "kcmp": lambda: kcmp_rs.kcmp(me, me, KcmpType.FILE, a, a_dup),
            "same_vm": lambda: kcmp_rs.same_vm(me, os.getppid()),
            "classify_tasks": lambda: kcmp_rs.classify_tasks([me, os.getppid()], KcmpType.FS),
            "same_file": lambda: kcmp_rs.same_file(me, a, me, a_dup),
        }
        out["first"] = attempt(calls[first_call])
        out["support"] = kcmp_rs.support()
        out["same_file"] = attempt(kcmp_rs.same_file, me, a, me, b)
        out["classify_all"] = attempt(kcmp_rs.classify_fds, me)
        out["kernel"] = attempt(kcmp_rs.classify_fds, me, [a, a_dup, b], order="kernel")
        return out

    out = in_child(child)
    assert out["probe"].kcmp
    if first_call == "same_file":
        assert_value(out["first"], True, "same_file after the filter")
    else:
        assert_unavailable(out["first"], blocker, f"{first_call} after the filter")
        assert out["first"].undecided == ()
    check_support(out["support"], blocker)
    assert_value(out["same_file"], False, "same_file (fallback)")
    assert_value(out["classify_all"], out["truth_all"], "classify_fds(me) (fallback)")
    assert_unavailable(out["kernel"], blocker, 'order="kernel"')
    assert 'order="kernel"' in out["kernel"].message


def test_classify_files_right_after_a_stale_probe(fd_leak_check: None, spawn: Any) -> None:
    """Another process's fds on a key collision need kcmp: with a stale "usable" the
    first batch may raise KcmpUnavailableError (never a wrong answer); then support()
    knows, and the same batch answers through pidfd_getfd."""
    sib = spawn(_sibling_setup)
    refs = [(sib.pid, fd) for fd in sorted(sib.data["fds"].values())]
    truth = kcmp_rs.classify_files(refs)

    def child() -> tuple[Support, Outcome, Support, Outcome]:
        probe = kcmp_rs.support()
        EPERM.install()
        first = attempt(kcmp_rs.classify_files, refs, allow_pidfd_getfd=True)
        return (
            probe,
            first,
            kcmp_rs.support(),
            attempt(kcmp_rs.classify_files, refs, allow_pidfd_getfd=True),
        )

    probe, first, after, second = in_child(child)
    assert probe.kcmp
    if not first.ok:
        assert_unavailable(first, EPERM, "classify_files after the filter")
    else:
        assert_value(first, truth, "classify_files after the filter")
    check_support(after, EPERM)
    assert_value(second, truth, "classify_files, again")


# ---- this process's own fds ----


@blockers
def test_own_fds_classified_exactly(blocker: Blocker, mix: FdMix) -> None:
    fds = mix.fd_list()
    truth = truth_of_fds(fds)
    closed = max(mix.fds.values()) + 64
    pairs = [(x, y) for i, x in enumerate(fds) for y in fds[i + 1 :]]
    same_truth = [any(x in g and y in g for g in truth) for x, y in pairs]

    def child() -> dict[str, Any]:
        me = os.getpid()
        blocker.install()
        return {
            "me": me,
            "fds": attempt(kcmp_rs.classify_fds, me, fds),
            "shuffled": attempt(kcmp_rs.classify_fds, me, list(reversed(fds)) + fds[:3]),
            "files": attempt(kcmp_rs.classify_files, [(me, fd) for fd in fds]),
            "pairs": [attempt(kcmp_rs.same_file, me, x, me, y) for x, y in pairs],
            "skip": attempt(kcmp_rs.classify_fds, me, [*fds, closed], missing="skip"),
            "raise": attempt(kcmp_rs.classify_fds, me, [*fds, closed]),
            "support": kcmp_rs.support(),
        }

    out = in_child(child)
    me = out["me"]
    assert_value(out["fds"], truth, "classify_fds")
    assert_value(out["shuffled"], truth, "classify_fds, shuffled with repeats")
    assert_value(out["files"], [tuple((me, fd) for fd in g) for g in truth], "classify_files")
    for (x, y), o, expected in zip(pairs, out["pairs"], same_truth):
        assert_value(o, expected, f"same_file(fd {x}, fd {y})")
    assert_value(out["skip"], truth, "classify_fds with a closed fd, missing=skip")
    raised = out["raise"]
    assert raised.error != "KcmpUnavailableError" and raised.errno == errno.EBADF, raised
    assert f"fd {closed}" in raised.message, raised.message
    assert_no_fd_change(raised, "classify_fds with a closed fd")
    check_support(out["support"], blocker)


# ---- what only kcmp can answer ----


@blockers
def test_kernel_order_and_task_level_calls_need_kcmp(blocker: Blocker, mix: FdMix) -> None:
    fds = mix.fd_list(mix.pollable)
    a = fds[0]

    def child() -> dict[str, Outcome]:
        me, parent = os.getpid(), os.getppid()
        blocker.install()
        ep = select.epoll()
        ep.register(a, select.EPOLLIN)
        out = {
            "kernel": attempt(kcmp_rs.classify_fds, me, fds, order="kernel"),
            "kcmp_vm": attempt(kcmp_rs.kcmp, me, me, KcmpType.VM),
            "kcmp_file": attempt(kcmp_rs.kcmp, me, parent, KcmpType.FILE, a, a),
            "same_vm": attempt(kcmp_rs.same_vm, me, parent),
            "same_fs": attempt(kcmp_rs.same_fs, me, me),
            "sharing": attempt(kcmp_rs.sharing, me, parent),
            "classify_tasks": attempt(kcmp_rs.classify_tasks, [me, parent], KcmpType.VM),
            "epoll": attempt(kcmp_rs.same_epoll_target, me, a, me, ep.fileno(), a),
        }
        ep.close()
        return out

    out = in_child(child)
    for what, o in out.items():
        assert_unavailable(o, blocker, what)
        assert o.undecided == (), (what, o.undecided)
    assert 'order="kernel"' in out["kernel"].message


# ---- another process's fds ----


def _sibling_setup() -> dict[str, Any]:
    """A process started before any filter, with fds of its own (and ours, inherited)."""
    m = FdMix()
    m.pipe("p")
    m.dup("p.r+", "p.r")
    m.socketpair("s")
    m.dup("s.b+", "s.b", at_least=200)
    m.fifo("fifo", opens=2)
    if m.eventfd("ev"):
        m.dup("ev+", "ev")
    m.regular("file", opens=2)
    m.dup("file.1+", "file.1")
    m.unlink()
    return {"fds": m.fds, "pollable": sorted(m.pollable), "gone": max(m.fds.values()) + 50}


def _key(pid: int, fd: int) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    return (st.st_dev, st.st_ino)


@blockers
def test_other_process_fds_need_pidfd_getfd(blocker: Blocker, mix: FdMix, spawn: Any) -> None:
    me = os.getpid()
    sib: ChildProcess = spawn(_sibling_setup)
    sfd: dict[str, int] = sib.data["fds"]
    snames = list(sfd)
    ours = mix.names()
    sib_refs = sorted((sib.pid, sfd[n]) for n in snames)
    our_refs = [(me, mix.fds[n]) for n in ours]
    truth = kcmp_rs.classify_files(sib_refs + our_refs)
    brute = pairwise_groups(sib_refs + our_refs, lambda a, b: kcmp_rs.same_file(*a, *b))
    assert canonical(truth) == brute
    sib_truth = kcmp_rs.classify_fds(sib.pid, [fd for _, fd in sib_refs])
    keys = {r: _key(*r) for r in sib_refs + our_refs}
    inherited = mix.fds["p1.r"]  # the sibling holds our p1.r under the same number
    # Files refuse epoll: without F_DUPFD_QUERY, copies of them reach the lock rung.
    regular = [(sib.pid, sfd[n]) for n in ("file.0", "file.1", "file.1+")]
    regular_truth = kcmp_rs.classify_files(regular)
    sib_before = sorted(os.listdir(f"/proc/{sib.pid}/fd"))

    def child() -> dict[str, Any]:
        kid = os.getpid()
        blocker.install()
        refs = sib_refs + our_refs + [(kid, fd) for _, fd in our_refs]
        s = sib.pid
        getfd = {"allow_pidfd_getfd": True}
        out: dict[str, Any] = {"kid": kid}
        for label, kw in (("no", {}), ("yes", getfd)):
            out[f"files_{label}"] = attempt(kcmp_rs.classify_files, refs, **kw)
            out[f"fds_{label}"] = attempt(kcmp_rs.classify_fds, s, [fd for _, fd in sib_refs], **kw)
            out[f"dup_{label}"] = attempt(kcmp_rs.same_file, s, sfd["p.r"], s, sfd["p.r+"], **kw)
            out[f"ends_{label}"] = attempt(kcmp_rs.same_file, s, sfd["p.r"], s, sfd["p.w"], **kw)
            out[f"mine_{label}"] = attempt(kcmp_rs.same_file, kid, inherited, s, inherited, **kw)
            out[f"parent_{label}"] = attempt(kcmp_rs.same_file, me, inherited, kid, inherited, **kw)
        out["regular"] = attempt(kcmp_rs.classify_files, regular, **getfd)
        return out

    out = in_child(child)
    kid = out["kid"]
    # The child's own refs share descriptions with ours (it inherited them).
    expected = canonical(
        [*g, *((kid, fd) for p, fd in g if p == me and (me, fd) in our_refs)] for g in truth
    )
    refs = sib_refs + our_refs + [(kid, fd) for _, fd in our_refs]
    keys.update({(kid, fd): keys[(me, fd)] for _, fd in our_refs})

    # Without pidfd_getfd: the refs of other processes sharing a key cannot be decided.
    o = out["files_no"]
    assert_unavailable(o, blocker, "classify_files without pidfd_getfd")
    crowded = {r for r in refs if sum(keys[x] == keys[r] for x in refs) > 1}
    foreign = {r for r in crowded if r[0] != kid}
    mixed_keys = {keys[r] for r in foreign}
    assert foreign <= set(o.undecided), sorted(foreign - set(o.undecided))
    assert set(o.undecided) <= {r for r in crowded if keys[r] in mixed_keys}, o.undecided
    assert_names_undecided(o)
    s = sib.pid
    for what, named in [
        ("fds_no", set(sib_refs)),
        ("dup_no", {(s, sfd["p.r"]), (s, sfd["p.r+"])}),
        ("mine_no", {(kid, inherited), (s, inherited)}),
        ("parent_no", {(me, inherited), (kid, inherited)}),
    ]:
        o = out[what]
        assert_unavailable(o, blocker, what)
        assert o.undecided and set(o.undecided) <= named, (what, o.undecided)
        assert_names_undecided(o)

    # With it: exact, and equal to what kcmp said.
    o = out["files_yes"]
    assert o.ok and canonical(o.value) == expected, o.describe()
    assert_no_fd_change(o, "classify_files with pidfd_getfd")
    assert_fd_order(o.value)
    assert_value(out["fds_yes"], sib_truth, "classify_fds of the sibling with pidfd_getfd")
    assert_value(out["dup_yes"], True, "same_file on a dup in the sibling")
    assert_value(out["ends_yes"], False, "same_file on a pipe's two ends in the sibling")
    assert_value(out["mine_yes"], True, "same_file on an fd the sibling inherited")
    assert_value(out["parent_yes"], True, "same_file on an fd the child inherited")
    assert_value(out["regular"], regular_truth, "regular files of the sibling")
    # pidfd_getfd copies; it never touches the other process's fd table.
    assert sorted(os.listdir(f"/proc/{sib.pid}/fd")) == sib_before


@blockers
def test_closed_fd_of_another_process(blocker: Blocker, fd_leak_check: None, spawn: Any) -> None:
    """A ref that is not open is an EBADF (or skipped), never a kcmp behind a
    disable_kcmp(): under the kill filter that would end the process."""
    sib: ChildProcess = spawn(_sibling_setup)
    sfd: dict[str, int] = sib.data["fds"]
    s, gone = sib.pid, sib.data["gone"]
    refs = [(s, sfd["p.r"]), (s, sfd["p.r+"])]

    def child() -> tuple[Outcome, Outcome, Outcome]:
        blocker.install()
        return (
            attempt(kcmp_rs.classify_files, [*refs, (s, gone)], allow_pidfd_getfd=True),
            attempt(
                kcmp_rs.classify_files, [*refs, (s, gone)], allow_pidfd_getfd=True, missing="skip"
            ),
            attempt(kcmp_rs.classify_fds, s, [gone, sfd["p.w"]], allow_pidfd_getfd=True),
        )

    result = run_in_child(child)
    assert result.status == 0, f"the child {describe_status(result.status)}"
    raised, skipped, raised_fds = result.unwrap()
    for o in (raised, raised_fds):
        assert o.error != "KcmpUnavailableError" and o.errno == errno.EBADF, o.describe()
        assert f"fd {gone}" in o.message, o.message
        assert_no_fd_change(o, "a closed fd")
    assert_value(skipped, [tuple(refs)], "classify_files, missing=skip")


# ---- KCMP_RS_NO_KCMP=1, read at import ----


def _run_script(
    spec: dict[str, Any], env_value: str | None, fds: Sequence[int]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = dict(os.environ)
    env.pop("KCMP_RS_NO_KCMP", None)
    if env_value is not None:
        env["KCMP_RS_NO_KCMP"] = env_value
    package_root = str(Path(kcmp_rs.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root, str(_TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, str(_HELPERS_SCRIPT), json.dumps(spec)],
        env=env,
        pass_fds=tuple(fds),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    steps: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        data = json.loads(line)
        steps[data["step"]] = Outcome.from_json(data["outcome"]) if "outcome" in data else None
    return proc, steps


# What the subprocess must say (its filter is installed by _fallback_helpers, not here).
_NO_KCMP = Blocker("env", errno.EPERM, DISABLED_WORDS, ("kill",))


def test_no_kcmp_env_var_never_issues_kcmp(mix: FdMix) -> None:
    """With KCMP_RS_NO_KCMP=1 a process whose seccomp filter kills on kcmp survives
    every call and still answers (the fds are ours, passed down)."""
    me = os.getpid()
    fds = mix.fd_list()
    truth = truth_of_fds(fds)
    dup = [mix.fds["p1.r"], mix.fds["p1.r+"]]
    other = [(me, fd) for fd in dup] + [(me, fd) for fd in fds if fd not in dup]
    other_truth = kcmp_rs.classify_files(other)
    spec = {"kill": True, "fds": dup + [fd for fd in fds if fd not in dup], "other": other}
    proc, steps = _run_script(spec, "1", fds)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "done" in steps, proc.stdout

    support = steps["support"]
    assert support.ok and support.value["kcmp"] is False, support
    for word in DISABLED_WORDS:
        assert word in support.value["reason"], support.value
    assert steps["support_refresh"].value == support.value
    assert canonical(steps["classify_fds"].value) == canonical(truth)
    assert_fd_order(steps["classify_fds"].value)
    assert_no_fd_change(steps["classify_fds"], "classify_fds")
    assert_value(steps["same_file_own"], True, "same_file on a dup")
    for what in ("classify_fds_kernel", "kcmp", "kcmp_file", "same_vm", "classify_tasks"):
        assert_unavailable(steps[what], _NO_KCMP, what)
    assert 'order="kernel"' in steps["classify_fds_kernel"].message
    for what in ("classify_files_other", "same_file_other"):
        o = steps[what]
        assert_unavailable(o, _NO_KCMP, what)
        assert o.undecided and set(o.undecided) <= set(other), o.undecided
        assert_names_undecided(o)
    o = steps["classify_files_other_getfd"]
    assert canonical(o.value) == canonical(other_truth), o.describe()
    assert_no_fd_change(o, "classify_files with pidfd_getfd")
    assert_value(steps["same_file_other_getfd"], True, "same_file with pidfd_getfd")


def test_no_kcmp_env_var_and_a_closed_fd_of_another_process(mix: FdMix) -> None:
    """Skipping a ref that is not open must not take a kcmp either."""
    me = os.getpid()
    dup = [mix.fds["p1.r"], mix.fds["p1.r+"]]
    spec = {
        "kill": True,
        "fds": dup,
        "other": [(me, fd) for fd in dup],
        "gone_fd": max(fd for fd, _ in fd_snapshot()) + 100,
        "steps": ["classify_files_gone"],
    }
    proc, steps = _run_script(spec, "1", dup)
    assert proc.returncode == 0, (
        f"returncode {proc.returncode} (-{int(signal.SIGSYS)} is SIGSYS: kcmp was issued)",
        proc.stdout,
        proc.stderr,
    )
    o = steps["classify_files_gone"]
    assert o.ok and canonical(o.value) == [tuple((me, fd) for fd in dup)], o.describe()
    assert_no_fd_change(o, "classify_files with a closed fd, missing=skip")


@pytest.mark.parametrize("env_value", [None, "0", ""], ids=["unset", "zero", "empty"])
def test_kill_filter_kills_without_the_env_var(env_value: str | None, mix: FdMix) -> None:
    """The control: without KCMP_RS_NO_KCMP=1 the same filter kills at the first kcmp
    (the support() probe), after the import went through."""
    me = os.getpid()
    dup = [mix.fds["p1.r"], mix.fds["p1.r+"]]
    spec = {"kill": True, "fds": dup, "other": [(me, fd) for fd in dup], "steps": ["support"]}
    proc, steps = _run_script(spec, env_value, dup)
    assert proc.returncode == -signal.SIGSYS, (proc.returncode, proc.stdout, proc.stderr)
    assert list(steps) == ["filtered", "imported"], proc.stdout


# ---- the same answer whichever rung gives it ----


@pytest.mark.parametrize("seed", range(8))
def test_every_rung_gives_the_kcmp_answer(seed: int, fd_leak_check: None) -> None:
    rng = random.Random(seed)
    m = FdMix.random_pollable(rng, size=rng.randint(8, 40))
    try:
        me = os.getpid()
        fds = m.fd_list()
        truth = truth_of_fds(fds)
        picked = rng.sample(fds, k=len(fds) // 2)
        files_truth = kcmp_rs.classify_files([(me, fd) for fd in picked])

        def child(blocker: Blocker) -> tuple[int, Outcome, Outcome, Outcome]:
            kid = os.getpid()
            blocker.install()
            order = fds[:]
            rng.shuffle(order)
            refs = [(me, fd) for fd in picked] + [(kid, fd) for fd in picked]
            return (
                kid,
                attempt(kcmp_rs.classify_fds, kid, order),
                attempt(kcmp_rs.classify_fds, kid, fds, missing="skip"),
                attempt(kcmp_rs.classify_files, refs, allow_pidfd_getfd=True),
            )

        for blocker in BLOCKERS:
            kid, shuffled, plain, files = run_in_child(child, blocker).unwrap()
            assert_value(shuffled, truth, f"{blocker.name}: classify_fds, shuffled")
            assert_value(plain, truth, f"{blocker.name}: classify_fds")
            assert files.ok, f"{blocker.name}: {files.describe()}"
            expected = canonical([*g, *((kid, fd) for _, fd in g)] for g in files_truth)
            assert canonical(files.value) == expected, blocker.name
            assert_fd_order(files.value)
            assert_no_fd_change(files, f"{blocker.name}: classify_files")
    finally:
        m.close()
