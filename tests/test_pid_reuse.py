"""Pid reuse mid-batch: classify_files, classify_fds and classify_tasks never answer
for a process that replaced their target under the same pid.

The tests run inside a private pid namespace (as root), where
``/proc/sys/kernel/ns_last_pid`` picks the next pid, so a process can be replaced by a new
one under the same pid at a moment the test chooses. That moment is inside a batch: the
native code checks for Ctrl-C between chunks of work by running Python signal handlers,
so a SIGALRM handler fires mid-batch; it replaces the target process only once the
batch's own fds show it is past the point that matters (it already holds the target's
pidfd, or its /proc/PID/fd directory for a later pid). The swap is therefore
deterministic relative to the batch, and the batch sees the old process, then the new
one, with no window in which the pid does not exist: only the identity check (pidfd or
start time, taken at first use) can notice.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import kcmp_rs
import pytest
from _checks import needs_root
from _helpers import canonical, dup_at_least, fd_snapshot, libc, run_in_child
from kcmp_rs import KcmpType

libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_CLONE_NEWNS = 0x00020000
_CLONE_NEWPID = 0x20000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

_SLEEP = shutil.which("sleep") or "/bin/sleep"

#: How long a scenario may run before it counts as hung: about 2 s here, but the 16
#: rounds of 1,101 tasks took over a minute under QEMU's emulation (make kernel-test).
_HANG = 900

#: Pids inside the namespace: processes before the target, the target, the rest.
_FARM_BEFORE_PID = 1000
_TARGET_PID = 2000
_LATER_PID = 3000

#: Python code for a process with argv[1] extra threads that all sleep forever.
_THREAD_FARM = """
import sys, threading
threading.stack_size(1 << 18)
forever = threading.Event()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=forever.wait, daemon=True).start()
forever.wait()
"""


class ReuseMishandled(Exception):
    """A batch whose target pid was reused mid-call answered wrongly (see the message)."""


def _checked(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _set_next_pid(pid: int) -> None:
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))


def _spawn_at(pid: int, fds: dict[int, int], argv: Sequence[str] = ()) -> int:
    """Starts ``argv`` (default: sleep) as pid ``pid``, its fd ``dst`` a copy of our ``src``
    for each ``dst: src`` of ``fds``; the files are in place when this returns."""
    _set_next_pid(pid)
    actions = [(os.POSIX_SPAWN_DUP2, src, dst) for dst, src in sorted(fds.items())]
    args = list(argv) or [_SLEEP, "100000"]
    got = os.posix_spawn(args[0], args, dict(os.environ), file_actions=actions)
    assert got == pid, f"asked for pid {pid}, got {got}"
    if not argv:
        _wait_asleep(got)
    return got


#: nanosleep and clock_nanosleep per machine, as /proc/PID/syscall numbers them.
_SLEEP_SYSCALLS = {"x86_64": {35, 230}, "aarch64": {101, 115}}


def _wait_asleep(pid: int) -> None:
    """Returns once ``pid`` (a ``sleep``) is blocked in its sleep. Until then the dynamic
    loader and locale setup open and close files at the lowest free fd, so a listing of
    its fd table can name an fd that is gone a moment later (under emulation that lasted
    over 50 ms)."""
    numbers = _SLEEP_SYSCALLS[os.uname().machine]
    deadline = time.monotonic() + 60
    while True:
        with open(f"/proc/{pid}/syscall") as f:
            words = f.read().split()
        if words and words[0].isdigit() and int(words[0]) in numbers:
            return
        assert time.monotonic() < deadline, f"sleep {pid} never got to sleep: {words[:1]}"
        time.sleep(0.001)


def _wait_past_start(pid: int) -> None:
    """Returns once the boot clock is two ticks past ``pid``'s start: start times count in
    ticks, and a process started under this pid from then on must have another one."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        start = int(f.read().rpartition(b")")[2].split()[19])  # field 22, after comm
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    while time.clock_gettime(time.CLOCK_BOOTTIME) * ticks_per_s < start + 2:
        time.sleep(0.001)


def _spawn_farm_at(pid: int, threads: int, fds: dict[int, int]) -> list[int]:
    """A process at ``pid`` with ``threads`` extra threads; returns its tids, ascending."""
    _spawn_at(pid, fds, [sys.executable, "-c", _THREAD_FARM, str(threads)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        if len(tids) == threads + 1:
            return tids
        time.sleep(0.01)
    raise AssertionError(f"thread farm {pid} did not start {threads} threads")


def _our_fd_targets() -> list[str]:
    return [target for _, target in fd_snapshot()]


def _is_pidfd(target: str) -> bool:
    return target == "anon_inode:[pidfd]" or target.startswith("pidfd:")


def _pidfd_held_for(pid: int) -> bool:
    """Whether this process holds a pidfd for ``pid`` (its fdinfo names the pid)."""
    for fd, target in fd_snapshot():
        if _is_pidfd(target):
            with contextlib.suppress(OSError), open(f"/proc/self/fdinfo/{fd}") as f:
                if f"Pid:\t{pid}\n" in f.read():
                    return True
    return False


def _enter_private_proc() -> None:
    """In a fresh pid namespace's first process: a private mount namespace with a /proc
    of this pid namespace (pids in /proc and in syscalls then agree)."""
    _checked(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _checked(
        libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /"
    )
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _checked(libc.mount(b"proc", b"/proc", b"proc", flags, None), "mount proc")
    assert os.getpid() == 1, os.getpid()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))


# Over the mccabe limit: one sequential scenario reads better whole than split.
def _reuse_scenario(kind: str, missing: str, when: str) -> dict[str, Any]:  # noqa: C901
    """Runs as pid 1 of a new pid namespace: one batch whose target is replaced mid-call.

    ``kind``: "files" (classify_files over the target's refs, then 3000 refs of a later
    process that share the target's first file), "files-starttime" (the same after 100
    processes, so the target is past the batch's pidfd cap and tracked by start time),
    "fds" (classify_fds of the target, 2000 fds) or "tasks" (classify_tasks of the target
    and the 1101 tasks of a later process). ``when``: "later" swaps once the batch works
    on the later process, "keying" while it still reads the target's own fds.
    """
    _enter_private_proc()
    _, xw = os.pipe()  # the target's file, shared with the later process
    _, yw = os.pipe()  # the replacement's file at the same fd numbers
    _, zw = os.pipe()  # the farm's file (a separate bucket)
    x, y, z = (dup_at_least(fd, 10000 + i) for i, fd in enumerate((xw, yw, zw)))
    target_fds = 2000 if kind in ("files", "files-starttime", "fds") else 1
    later_fds = 3000

    farm: list[int] = []
    if kind == "files-starttime":
        # Processes, not threads: before Linux 6.9 (no PIDFD_THREAD) a thread id gets
        # no pidfd, so only processes use up the batch's cap of 64 before the target.
        farm = [_spawn_at(_FARM_BEFORE_PID + i, {3: z}) for i in range(100)]
    target = _spawn_at(_TARGET_PID, {3 + i: x for i in range(target_fds)})

    call: Callable[[], list[Any]]
    expect_intact: list[tuple[Any, ...]]  # the right answer with the target left out
    if kind == "tasks":
        later_tids = _spawn_farm_at(_LATER_PID, 1100, {})
        pids = [target, *later_tids]

        def call() -> list[Any]:
            return kcmp_rs.classify_tasks(pids, KcmpType.VM, missing=missing)  # type: ignore[arg-type]

        def witness(targets: list[str]) -> bool:
            return sum(map(_is_pidfd, targets)) >= 2  # the target's and a later task's

        expect_intact = [tuple(later_tids)]
    elif kind == "fds":

        def call() -> list[Any]:
            got = kcmp_rs.classify_fds(target, missing=missing)  # type: ignore[arg-type]
            return [tuple((target, fd) for fd in g) for g in got]

        def witness(targets: list[str]) -> bool:
            return f"/proc/{target}/fd" in targets

        expect_intact = []
    else:
        later = _spawn_at(_LATER_PID, {3 + i: x for i in range(later_fds)})
        farm_refs = [(t, 3) for t in farm]
        later_refs = [(later, 3 + i) for i in range(later_fds)]
        refs = [*farm_refs, *((target, 3 + i) for i in range(target_fds)), *later_refs]

        def call() -> list[Any]:
            return kcmp_rs.classify_files(refs, missing=missing)  # type: ignore[arg-type]

        watched = f"/proc/{later if when == 'later' else target}/fd"

        def witness(targets: list[str]) -> bool:
            return watched in targets

        expect_intact = canonical(g for g in (farm_refs, later_refs) if g)

    before = canonical(call())
    state: dict[str, Any] = {"armed": False, "swapped": False}

    # A one-shot timer, re-armed as the handler's last act while the moment has not
    # come: never a second SIGALRM (and a nested handler) during the swap itself.
    def on_alarm(signum: int, frame: Any) -> None:
        if not state["armed"] or state["swapped"]:
            return
        if not witness(_our_fd_targets()):
            signal.setitimer(signal.ITIMER_REAL, 0.0002)
            return
        state["target_had_pidfd"] = _pidfd_held_for(target)
        _wait_past_start(target)
        os.kill(target, signal.SIGKILL)
        os.waitpid(target, 0)
        state["replacement"] = _spawn_at(target, {3 + i: state["fill"] for i in range(target_fds)})
        state["swapped"] = True

    signal.signal(signal.SIGALRM, on_alarm)
    rounds: list[dict[str, Any]] = []
    for n in range(_reuse_rounds(kind, missing)):
        # Each round replaces the previous round's replacement, alternating its files.
        state.update(swapped=False, target_had_pidfd=None, replacement=None, fill=(y, x)[n % 2])
        outcome: dict[str, Any] = {}
        attempts = 0
        while not state["swapped"] and attempts < 5:
            attempts += 1
            outcome = {}
            state["armed"] = True
            signal.setitimer(signal.ITIMER_REAL, 0.0002)
            try:
                outcome["groups"] = canonical(call())
            except OSError as e:
                gone = (getattr(e, "pid", None), getattr(e, "kind", None))
                outcome["error"] = (type(e).__name__, e.errno, *gone, str(e))
            finally:
                state["armed"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        rounds.append({**outcome, **state, "attempts": attempts})
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    return {"target": target, "before": before, "expect_intact": expect_intact, "rounds": rounds}


def _reuse_rounds(kind: str, missing: str) -> int:
    """Swaps per scenario. A wrong skip answer for tasks (the survivors split into
    several groups) can show only when the kernel's order, random per boot, puts the
    old and the new process on different sides of the other tasks: about half the
    time, hence 16 tries."""
    return 16 if (kind, missing) == ("tasks", "skip") else 1


def _in_new_pid_namespace(kind: str, missing: str, when: str) -> dict[str, Any]:
    try:
        _checked(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    except OSError as e:
        return {"skip": f"cannot create a pid namespace here: {e}"}
    return run_in_child(_reuse_scenario, kind, missing, when, timeout=_HANG).unwrap()


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "missing", "when"),
    [
        pytest.param("files", "raise", "later", id="files-raise"),
        pytest.param("files", "skip", "later", id="files-skip"),
        pytest.param("files", "raise", "keying", id="files-raise-while-keying"),
        pytest.param("files", "skip", "keying", id="files-skip-while-keying"),
        pytest.param("files-starttime", "raise", "later", id="files-starttime-raise"),
        pytest.param("files-starttime", "skip", "later", id="files-starttime-skip"),
        pytest.param("fds", "raise", "keying", id="fds-raise"),
        pytest.param("fds", "skip", "keying", id="fds-skip"),
        pytest.param("tasks", "raise", "later", id="tasks-raise"),
        pytest.param("tasks", "skip", "later", id="tasks-skip"),
    ],
)
def test_pid_reused_mid_batch_is_never_answered_for(kind: str, missing: str, when: str) -> None:
    """The target pid is replaced mid-batch by a process whose fds at the same numbers
    are other files. With missing="raise" the batch must raise ProcessLookupError naming
    the pid (classify_fds, about that one process, in both modes); with "skip" it must
    leave the pid's refs out and group the rest exactly as
    without the target. A batch that trusted the pid (no identity check) returns groups
    mixing both processes' answers, which fails here."""
    got = run_in_child(_in_new_pid_namespace, kind, missing, when, timeout=_HANG + 60).unwrap()
    if "skip" in got:
        pytest.skip(got["skip"])
    assert got["before"], "the undisturbed batch found nothing: the setup is wrong"
    for n, outcome in enumerate(got["rounds"]):
        _check_reuse_outcome(kind, missing, when, got["target"], got["expect_intact"], n, outcome)


def _check_reuse_outcome(
    kind: str,
    missing: str,
    when: str,
    target: int,
    expect_intact: list[tuple[Any, ...]],
    n: int,
    got: dict[str, Any],
) -> None:
    where = f"round {n}: "
    assert got["swapped"], (
        f"{where}the target was never replaced mid-call ({got['attempts']} tries)"
    )
    assert got["replacement"] == target
    if kind == "files-starttime":
        assert not got["target_had_pidfd"], (
            "the target got a pidfd: the batch's pidfd cap grew past the 100 processes "
            "before it, so this case no longer covers the start-time identity; add some"
        )
    else:
        assert got["target_had_pidfd"], f"{where}the batch held no pidfd for the target"

    # classify_fds asks about one process: its exit is an error whatever `missing` says.
    if missing == "raise" or kind == "fds":
        if "error" not in got:
            sizes = [len(g) for g in got["groups"]]
            raise ReuseMishandled(f"{where}no error; groups of sizes {sizes}")
        name, err, pid, gone, message = got["error"]
        if (name, err, pid, gone) != ("ProcessGoneError", errno.ESRCH, target, "exited"):
            raise ReuseMishandled(f"{where}{name} errno={err} pid={pid}: {message}")
        assert f"process {target} exited during the call" in message, message
        return
    if "error" in got:
        raise ReuseMishandled(f"{where}missing='skip' raised {got['error']}")
    groups = got["groups"]
    leaked = [r for g in groups for r in g if (r[0] if isinstance(r, tuple) else r) == target]
    if leaked:
        raise ReuseMishandled(f"{where}refs of the replaced pid in the result: {leaked[:5]}")
    if groups != expect_intact:
        sizes = [len(g) for g in groups]
        expected = [len(g) for g in expect_intact]
        raise ReuseMishandled(f"{where}surviving refs grouped {sizes}, expected {expected}")


def _scan_reuse_scenario() -> dict[str, Any]:
    """Runs as pid 1 of a new pid namespace: a scan whose first process is replaced
    under the same pid (by one holding other files at the same fd numbers) right after
    its fds were listed, before they are classified."""
    _enter_private_proc()
    _, xw = os.pipe()
    _, yw = os.pipe()
    x, y = dup_at_least(xw, 10000), dup_at_least(yw, 10001)
    target = _spawn_at(_TARGET_PID, {3: x, 4: x})
    other = _spawn_at(_LATER_PID, {3: x})
    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "replacement" in state:
            return
        _wait_past_start(target)
        os.kill(target, signal.SIGKILL)
        os.waitpid(target, 0)
        state["replacement"] = _spawn_at(target, {3: y, 4: y})

    result = kcmp_rs.scan([target, other], include_unshared=True, progress=progress)
    return {
        "target": target,
        "other": other,
        "replaced": state.get("replacement") == target,
        "skipped": [(s.pid, s.reason) for s in result.skipped],
        "members": sorted((m.pid, m.fd) for d in result.descriptions for m in d.members),
        "processes_read": result.processes_read,
    }


def _scan_in_new_pid_namespace() -> dict[str, Any]:
    try:
        _checked(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    except OSError as e:
        return {"skip": f"cannot create a pid namespace here: {e}"}
    return run_in_child(_scan_reuse_scenario, timeout=_HANG).unwrap()


@needs_root
def test_a_pid_reused_between_listing_and_classifying_is_skipped_by_scan() -> None:
    """scan() pins every process before it lists any: the process that replaced a
    listed one under its pid is never answered for, and the pid is skipped as exited."""
    got = run_in_child(_scan_in_new_pid_namespace, timeout=_HANG + 60).unwrap()
    if "skip" in got:
        pytest.skip(got["skip"])
    assert got["replaced"], got
    target, other = got["target"], got["other"]
    assert got["skipped"] == [(target, "exited")], got
    assert not [m for m in got["members"] if m[0] == target], got
    assert (other, 3) in got["members"], got
    assert got["processes_read"] == 1, got


def _every_process_scenario() -> dict[str, Any]:
    """Runs as pid 1 of a new pid namespace, whose /proc lists only its own processes:
    the questions asked of every process (``pids=None``) read exactly these."""
    _enter_private_proc()
    r, _w = os.pipe()
    x = dup_at_least(r, 10000)
    a = _spawn_at(_TARGET_PID, {3: x, 4: x})
    b = _spawn_at(_LATER_PID, {5: x})
    found = kcmp_rs.holders(1, x)
    result = kcmp_rs.scan(include_unshared=True)
    with_x = next(d for d in result.descriptions if (1, x) in [(m.pid, m.fd) for m in d.members])
    cli = "import sys; from kcmp_rs.cli import main; sys.exit(main())"
    done = subprocess_output([sys.executable, "-c", cli, "holders", "1", str(x), "-J"])
    for pid in (a, b):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {
        "a": a,
        "b": b,
        "r": r,
        "x": x,
        "holders": sorted((m.pid, m.fd) for m in found.members),
        "complete": found.complete,
        "scan": sorted((m.pid, m.fd) for m in with_x.members),
        "read": result.processes_read,
        "cli": sorted((m["pid"], m["fd"]) for m in json.loads(done)["description"]["members"]),
    }


def subprocess_output(argv: list[str]) -> bytes:
    """The standard output of ``argv``, which must exit 0."""
    import subprocess

    return subprocess.run(argv, check=True, capture_output=True, timeout=_HANG).stdout


def _every_process_in_new_pid_namespace() -> dict[str, Any]:
    try:
        _checked(libc.unshare(_CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    except OSError as e:
        return {"skip": f"cannot create a pid namespace here: {e}"}
    return run_in_child(_every_process_scenario, timeout=_HANG).unwrap()


@needs_root
def test_every_process_means_those_of_the_own_pid_namespace() -> None:
    """``holders`` and ``scan`` without pids, and ``kcmp-rs holders`` without -p, read
    every process /proc lists (natively): in a private pid namespace, exactly its own."""
    got = run_in_child(_every_process_in_new_pid_namespace, timeout=_HANG + 60).unwrap()
    if "skip" in got:
        pytest.skip(got["skip"])
    a, b, r, x = got["a"], got["b"], got["r"], got["x"]
    want = [(1, r), (1, x), (a, 3), (a, 4), (b, 5)]
    assert got["holders"] == want, got
    assert got["complete"], got
    assert got["scan"] == want, got
    assert got["cli"] == want, got
    assert got["read"] == 3, got
