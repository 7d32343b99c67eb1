"""Threads and churn: 8 threads at once give exactly the single-threaded answers;
classifiers racing threads that close, reopen, dup and dup2 fds and start children
answer exactly for what stayed put or raise OSError; fds of another process churning
over the same file as stable ones never split the stable ones. The "stress" and
"churn" figures of docs/reliability.md are printed here (``pytest -s``). More churn of classify_fds:
``test_classify_stress.py``.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import kcmp_rs
import pytest
from _checks import one_line
from _helpers import canonical, dup_at_least, partition
from conftest import Spawn
from kcmp_rs import KcmpType

ME = os.getpid()

_TRUE = shutil.which("true") or "/bin/true"

# ---- threads ----


def _shared_setup() -> tuple[list[int], dict[int, int]]:
    """Fds in this process and their description labels: pipes, dups, sockets, files."""
    labels: dict[int, int] = {}
    r, w = os.pipe()
    a, b = socket.socketpair()
    sa, sb = a.detach(), b.detach()
    n1 = os.open(os.devnull, os.O_RDONLY)
    n2 = os.open(os.devnull, os.O_RDONLY)  # same inode, another description
    for label, fd in enumerate((r, w, sa, sb, n1, n2)):
        labels[fd] = label
        for _ in range(label % 3):
            labels[os.dup(fd)] = label
    return list(labels), labels


def test_threads_agree_with_one_thread(spawn: Spawn) -> None:
    """8 threads at once calling classify_fds, classify_files and same_file on the same
    fds (this process's and a child's) give exactly the single-threaded answers."""
    fds, labels = _shared_setup()
    try:
        child = spawn()
        refs = [(ME, fd) for fd in fds] + [(child.pid, fd) for fd in fds]
        pairs = [(a, b) for a in fds for b in fds if a < b]
        expected_fds = partition(labels)
        assert canonical(kcmp_rs.classify_fds(ME, fds)) == expected_fds
        expected_refs = partition({(p, fd): labels[fd] for p, fd in refs})
        expected_pairs = [labels[a] == labels[b] for a, b in pairs]

        def answers() -> tuple[Any, ...]:
            return (
                canonical(kcmp_rs.classify_fds(ME, fds)),
                canonical(kcmp_rs.classify_fds(child.pid, fds, order="kernel")),
                canonical(kcmp_rs.classify_files(refs)),
                [kcmp_rs.same_file(ME, a, child.pid, b) for a, b in pairs],
            )

        single = answers()
        assert single == (expected_fds, expected_fds, expected_refs, expected_pairs)
        failures: list[str] = []
        start = threading.Barrier(8)

        def worker() -> None:
            try:
                start.wait()
                for _ in range(150):
                    got = answers()
                    if got != single:
                        failures.append(f"differs: {got!r}")
                        return
            except BaseException as e:
                failures.append(one_line(e))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a thread is stuck"
        assert failures == []
    finally:
        for fd in fds:
            os.close(fd)


# ---- stress: fds and children changing under the classifiers ----


class _Mutator:
    """A thread's own pool of fds, closed, reopened, dup'ed and dup2'ed at random. Its
    files (new pipes, socket pairs, a file of its own) never share an inode with the
    stable fds, so they can only ever land in other buckets."""

    def __init__(self, path: str, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.pool = [self._new_fd() for _ in range(6)]
        self.rounds = 0

    def _new_fd(self) -> int:
        kind = self.rng.randrange(3)
        if kind == 0:
            r, w = os.pipe()
            os.close(w)
            return r
        if kind == 1:
            a, b = socket.socketpair()
            b.close()
            return a.detach()
        return os.open(self.path, os.O_RDONLY)

    def step(self) -> None:
        i, j = self.rng.randrange(len(self.pool)), self.rng.randrange(len(self.pool))
        op = self.rng.randrange(3)
        if op == 0 or i == j:
            os.close(self.pool[i])
            self.pool[i] = self._new_fd()
        elif op == 1:
            os.dup2(self.pool[j], self.pool[i], inheritable=False)
        else:
            os.close(self.pool[i])
            self.pool[i] = os.dup(self.pool[j])
        self.rounds += 1

    def close(self) -> None:
        for fd in self.pool:
            os.close(fd)


def _stable_view(groups: Iterable[Iterable[Any]], stable: set[Any]) -> list[tuple[Any, ...]]:
    return canonical(kept for kept in ([x for x in g if x in stable] for g in groups) if kept)


# Over the mccabe limit: one sequential scenario reads better whole than split.
@pytest.mark.slow
def test_stress_mutating_fds_and_children(spawn: Spawn, tmp_path: Any) -> None:  # noqa: C901
    """Two threads churn their own fds (close, reopen, dup, dup2) and one starts and
    reaps short-lived children (posix_spawn, not fork), while three threads classify
    stable fds mixed with the churning ones and tasks mixed with the children, with
    missing="raise" and "skip". Every call either raises OSError or returns groups that
    are exact for the stable items; never a panic, a wrong stable group or a hang."""
    fds, labels = _shared_setup()
    mutators: list[_Mutator] = []
    try:
        child = spawn()
        stable_refs = {(ME, fd): labels[fd] for fd in fds}
        stable_refs.update({(child.pid, fd): labels[fd] for fd in fds})
        expected_fds = partition(labels)
        expected_refs = partition(stable_refs)
        stable_pids = {ME, child.pid}
        expected_tasks = canonical([[ME], [child.pid]])
        volatile_path = str(tmp_path / "volatile")
        with open(volatile_path, "w"):
            pass
        mutators = [_Mutator(volatile_path, seed) for seed in (1, 2)]
        recent: deque[int] = deque(maxlen=6)
        stop = threading.Event()
        failures: list[str] = []
        counts = {"calls": 0, "errors": 0, "children": 0}
        calls_per_classifier = 4000

        def churn(m: _Mutator) -> None:
            try:
                while not stop.is_set():
                    m.step()
            except BaseException as e:
                failures.append(f"mutator: {one_line(e)}")

        def spawner() -> None:
            try:
                while not stop.is_set():
                    pid = os.posix_spawn(_TRUE, [_TRUE], {})
                    recent.append(pid)
                    counts["children"] += 1
                    if len(recent) > 3:
                        time.sleep(0.001)
                    os.waitpid(pid, 0)
            except BaseException as e:
                failures.append(f"spawner: {one_line(e)}")

        def classify(which: int) -> None:
            rng = random.Random(which)
            try:
                for i in range(calls_per_classifier):
                    missing: Any = ("raise", "skip")[i % 2]
                    volatile = [fd for m in mutators for fd in list(m.pool)]
                    try:
                        if which == 0:
                            got = kcmp_rs.classify_fds(ME, fds + volatile, missing=missing)
                            ok = _stable_view(got, set(fds)) == expected_fds
                        elif which == 1:
                            refs = list(stable_refs) + [(ME, fd) for fd in volatile]
                            rng.shuffle(refs)
                            files = kcmp_rs.classify_files(refs, missing=missing)
                            ok = _stable_view(files, set(stable_refs)) == expected_refs
                        else:
                            pids = [ME, child.pid, *list(recent)]
                            ty = (KcmpType.VM, KcmpType.FILES, KcmpType.FS)[i % 3]
                            tasks = kcmp_rs.classify_tasks(pids, ty, missing=missing)
                            ok = _stable_view(tasks, stable_pids) == expected_tasks
                        if not ok:
                            failures.append(f"classifier {which}: wrong stable groups")
                    except OSError as e:
                        counts["errors"] += 1
                        blamed = (getattr(e, "pid", None), getattr(e, "fd", None))
                        if blamed in stable_refs or (which == 2 and blamed[0] in stable_pids):
                            failures.append(
                                f"classifier {which} blamed a stable item: {one_line(e)}"
                            )
                    counts["calls"] += 1
            except BaseException as e:  # a PanicException is a BaseException
                failures.append(f"classifier {which}: {one_line(e)}")

        background = [threading.Thread(target=churn, args=(m,)) for m in mutators]
        background.append(threading.Thread(target=spawner))
        classifiers = [threading.Thread(target=classify, args=(n,)) for n in range(3)]
        for t in background + classifiers:
            t.start()
        for t in classifiers:
            t.join(timeout=240)
        stop.set()
        for t in background:
            t.join(timeout=30)
        stuck = [t.name for t in background + classifiers if t.is_alive()]
        assert not stuck, f"threads still running (deadlock?): {stuck}"
        print(
            f"\nstress: {counts['calls']} classifier calls, {counts['children']} children, "
            f"{sum(m.rounds for m in mutators)} mutator rounds"
        )
        assert failures == []
        assert counts["calls"] == 3 * calls_per_classifier
        assert sum(m.rounds for m in mutators) > 1000, "the fds barely changed"
        assert counts["children"] > 10, "hardly any children were started"
    finally:
        for m in mutators:
            m.close()
        for fd in fds:
            os.close(fd)


# ---- churn: another process's fds changing over the same file ----

_CHURNER = """
import os, random, sys
desc_a, desc_b = 3, 4  # two ends of one pipe: one inode, two descriptions
churned = [os.dup(desc_b) for _ in range(12)]  # the lowest numbers: they become reps
stable = [os.dup(desc_a) for _ in range(4)]
print(" ".join(map(str, stable)), "|", " ".join(map(str, churned)), flush=True)
rng = random.Random(int(sys.argv[1]))
while True:
    os.dup2(rng.choice((desc_a, desc_b)), rng.choice(churned))
"""


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["raise", "skip"])
def test_stable_fds_stay_together_while_other_fds_of_their_file_churn(missing: str) -> None:
    """Another process dup2s the two ends of a pipe, at random, onto 12 low fd numbers
    (so they are the groups' reps), while 4 higher fds stay copies of one end.
    classify_fds of that process (the kcmp path: the fds are not ours) either puts the
    4 stable fds in one group or gives up with BlockingIOError (EAGAIN: the fds kept
    changing); a split of the stable fds is a wrong answer."""
    r, w = os.pipe()
    out_r, out_w = os.pipe()
    hr, hw, ho = (dup_at_least(fd, 100) for fd in (r, w, out_w))
    actions = [
        (os.POSIX_SPAWN_DUP2, hr, 3),
        (os.POSIX_SPAWN_DUP2, hw, 4),
        (os.POSIX_SPAWN_DUP2, ho, 1),
    ]
    args = [sys.executable, "-c", _CHURNER, "1"]
    pid = os.posix_spawn(args[0], args, dict(os.environ), file_actions=actions)
    for fd in (r, w, out_w, hr, hw, ho):
        os.close(fd)
    try:
        with os.fdopen(out_r, "rb") as out:
            stable_text, churned_text = out.readline().decode().split("|")
        stable = [int(x) for x in stable_text.split()]
        fds = sorted(stable + [int(x) for x in churned_text.split()])
        deadline = time.monotonic() + 20
        outcomes = {"grouped": 0, "gave up": 0}
        while sum(outcomes.values()) < 5_000 and time.monotonic() < deadline:
            try:
                groups = kcmp_rs.classify_fds(pid, fds, missing=missing)  # type: ignore[arg-type]
            except BlockingIOError:
                outcomes["gave up"] += 1
                continue
            except OSError as e:  # a churned fd closed mid-dup2: never a stable one
                assert e.errno == errno.EBADF and e.fd not in stable, one_line(e)  # type: ignore[attr-defined]
                outcomes["gave up"] += 1
                continue
            view = _stable_view(groups, set(stable))
            assert view == [tuple(stable)], f"stable fds {stable} grouped {view}; {outcomes}"
            outcomes["grouped"] += 1
        print(f"\nchurn ({missing}): {outcomes}")
        assert sum(outcomes.values()) > 100, outcomes
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _busy_elsewhere(stop: threading.Event, child: int, errors: list[BaseException]) -> None:
    """Questions about another process, again and again: each opens and closes pidfds,
    /proc directories and comparison fds of the package's own."""
    try:
        refs = [(child, fd) for fd in kcmp_rs.open_fds(child)]
        while not stop.is_set():
            kcmp_rs.scan([child])
            kcmp_rs.classify_files(refs)
            kcmp_rs.holders(child, refs[0][1], [child])
            kcmp_rs.shared_files(child, child)
    except BaseException as e:  # reported by the test, whatever it is
        errors.append(e)


def test_no_internal_fd_of_another_thread_is_ever_listed(spawn: Spawn) -> None:
    """While another thread keeps the package busy with another process, listings of
    this process's own table (open_fds, classify_fds, scan) never show an fd the
    package opened, and never raise about one that closed meanwhile."""
    child = spawn(lambda: [os.dup(0) for _ in range(20)])
    me = os.getpid()
    mine = set(os.listdir("/proc/self/fd"))  # includes the listing's own fd: drop it
    ours = set(kcmp_rs.open_fds(me))
    assert ours <= {int(n) for n in mine}
    stop = threading.Event()
    errors: list[BaseException] = []
    worker = threading.Thread(target=_busy_elsewhere, args=(stop, child.pid, errors))
    worker.start()
    extra: list[Any] = []
    try:
        for _ in range(300):
            listed = set(kcmp_rs.open_fds(me))
            grouped = {fd for g in kcmp_rs.classify_fds(me) for fd in g}
            scanned = {
                m.fd
                for d in kcmp_rs.scan([me], include_unshared=True).descriptions
                for m in d.members
            }
            for name, found in (("open_fds", listed), ("classify_fds", grouped), ("scan", scanned)):
                if found != ours:
                    extra.append((name, sorted(found ^ ours)))
    finally:
        stop.set()
        worker.join(60)
    assert not errors, errors
    assert extra == []


def test_a_child_forked_mid_pass_sees_every_fd_it_has(spawn: Spawn) -> None:
    """A process forked while the package holds fds (here: from a scan's progress
    callback, the scan's pins open) inherits them as plain fds: its own listing shows
    each of them, so none is hidden from it, and closing them hides none later."""
    others = [spawn().pid for _ in range(3)]
    statuses: list[int] = []

    def fork_now(done: int, total: int) -> None:
        if statuses:
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                listed = set(kcmp_rs.open_fds(os.getpid()))
                names = {int(n) for n in os.listdir("/proc/self/fd")}  # + its own fd
                code = 0 if len(names) == len(listed) + 1 and listed < names else 2
                for fd in listed - {0, 1, 2}:
                    os.close(fd)
                reopened = os.open(os.devnull, os.O_RDONLY)
                if kcmp_rs.open_fds(os.getpid()) != sorted({0, 1, 2, reopened}):
                    code = 3
            finally:
                os._exit(code)
        statuses.append(os.waitpid(pid, 0)[1])

    kcmp_rs.scan(others, progress=fork_now)
    assert statuses and os.waitstatus_to_exitcode(statuses[0]) == 0, statuses
