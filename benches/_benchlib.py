"""Shared machinery of the benchmarks: fd sets with known sharing, children holding
them, timing through pytest-benchmark, and the results the summary prints.

Benchmarks report, they never assert timings; they do assert that every
implementation found the groups the fd set was built with.

Fd sets (``build``), each with its true grouping:

- ``distinct``: n separate files, one fd each (n buckets of one description).
- ``dup``: n/4 files, each opened once and dup'ed to 4 fds.
- ``one-inode``: n/4 separate opens of ONE file, each dup'ed to 4 fds (one bucket
  holding n/4 descriptions: the case that needs kcmp).
- ``mix``: a quarter of each of the above plus a quarter pipe ends (both ends of a
  pipe share an inode but are two descriptions).

``where``: ``self`` (the fds are this process's) or ``child`` (a forked child builds
them, reports them over a pipe and waits; this process classifies the child's pid).

``floor_session`` / ``syscall_floor``: the syscall floor of a classification, measured
by the bench binary ``benches/syscall_floor.rs`` that ``make bench`` builds
(``target/bench/syscall_floor``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kcmp_rs._config import kcmp_disabled_by_environment, thread_limit_from_environment

SCENARIOS = ("distinct", "dup", "one-inode", "mix")
SIZES = (100, 1_000, 10_000)
WHERES = ("self", "child")


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the summary: a figure, its case, the measurement, its target."""

    figure: str
    case: str
    measured: str
    target: str = ""
    met: bool | None = None  # None: no target (informational)
    note: str = ""


@dataclass
class ClassifyCase:
    """Figure 1: medians (seconds) of the three implementations on one fd set."""

    native: float | None = None
    sorted: float | None = None
    planned: float | None = None
    stats: tuple[int, int, int, int] | None = None  # groups, keys, compares, sames


@dataclass
class Results:
    classify: dict[tuple[str, str, int], ClassifyCase] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_at_start: str = ""

    def case(self, scenario: str, where: str, n: int) -> ClassifyCase:
        return self.classify.setdefault((scenario, where, n), ClassifyCase())

    def add(self, *args: Any, **kw: Any) -> Row:
        row = Row(*args, **kw)
        self.rows.append(row)
        return row


RESULTS = Results()

#: Figure 1 targets at n = 10,000: speed-up of native over the sorted baseline.
SORTED_TARGETS = {
    ("distinct", "self"): 15.0,
    ("dup", "self"): 15.0,
    ("mix", "self"): 8.0,
    ("one-inode", "self"): 2.5,
    ("distinct", "child"): 5.0,
    ("dup", "child"): 4.5,
    ("mix", "child"): 4.0,
    ("one-inode", "child"): 2.0,
}
#: ... and over the planned baseline (calling process only).
PLANNED_TARGET_SELF = 2.5


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.2f} us"


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"nproc {os.cpu_count()}, kernel {platform.release()} ({platform.machine()}), "
        f"{cpu}, Python {platform.python_version()}"
    )


# ---------------------------------------------------------------- timing


def measure(
    benchmark: Any,
    fn: Callable[[], Any],
    *,
    budget: float = 0.5,
    min_rounds: int = 3,
    max_rounds: int = 200,
) -> tuple[Any, float]:
    """Times ``fn`` with pytest-benchmark's pedantic mode, sized from one probe call so
    slow calls get few rounds; returns (fn's result, median seconds per call)."""
    t0 = time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    iterations = 1 if t >= 1e-3 else min(1000, math.ceil(1e-3 / max(t, 1e-7)))
    rounds = max(min_rounds, min(max_rounds, int(budget / max(t * iterations, 1e-9))))
    result = benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        return result, float(stats.stats.median)
    # Benchmarks disabled (--benchmark-disable): time it ourselves.
    return result, median_time(fn, rounds=min_rounds)


def interleaved(
    benchmark: Any,
    fns: dict[str, Callable[[], Any]],
    *,
    budget: float = 1.0,
    min_rounds: int = 3,
    max_rounds: int = 200,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Times several implementations round by round, interleaved (the order rotates
    each round), so load from other work on the machine hits them alike.

    Each implementation is called enough times per round to take about 1 ms (or once,
    if slower). pytest-benchmark records the rounds (its entry is the time of one
    whole round); returns ({name: result of its first call}, {name: median seconds
    per call}).
    """
    results: dict[str, Any] = {}
    iters: dict[str, int] = {}
    round_time = 0.0
    for name, fn in fns.items():
        t0 = time.perf_counter()
        results[name] = fn()
        t = time.perf_counter() - t0
        iters[name] = 1 if t >= 1e-3 else min(1000, math.ceil(1e-3 / max(t, 1e-7)))
        round_time += t * iters[name]
    rounds = max(min_rounds, min(max_rounds, int(budget / max(round_time, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    turn = 0

    def one_round() -> None:
        nonlocal turn
        k = turn % len(names)
        turn += 1
        for name in names[k:] + names[:k]:
            fn, n = fns[name], iters[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    if not samples[names[0]]:  # benchmarks disabled: pedantic did not run the rounds
        for _ in range(min_rounds):
            one_round()
    return results, {name: statistics.median(v) for name, v in samples.items()}


def median_time(fn: Callable[[], Any], *, rounds: int = 5, iterations: int = 1) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iterations):
            fn()
        times.append((time.perf_counter() - t0) / iterations)
    return statistics.median(times)


# ---------------------------------------------------------------- fd sets


@dataclass
class FileSet:
    """Empty files to open: ``paths[i]`` distinct files, ``one`` a file of its own."""

    paths: list[str]
    one: str


def scratch_dir() -> str | None:
    """Where to create the files: tmpfs (/dev/shm) when usable, so no disk writeback
    of thousands of new inodes runs under the measurements; else the default."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def make_files(directory: str, count: int) -> FileSet:
    paths = []
    for i in range(count):
        p = os.path.join(directory, f"f{i:05d}")
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
        paths.append(p)
    one = os.path.join(directory, "one")
    os.close(os.open(one, os.O_CREAT | os.O_WRONLY, 0o600))
    return FileSet(paths, one)


Groups = list[tuple[int, ...]]


def normalise(groups: list[list[int]]) -> Groups:
    """Each group ascending, groups by smallest fd: the shape classify_fds returns."""
    return sorted((tuple(sorted(g)) for g in groups), key=lambda g: g[0])


class _Opener:
    """Opens fds in the calling process and records the true groups as it goes."""

    def __init__(self, files: FileSet) -> None:
        self.files = files
        self.groups: list[list[int]] = []
        self.next = 0  # next unused distinct file

    def fresh(self) -> str:
        self.next += 1
        return self.files.paths[self.next - 1]

    def distinct(self, count: int) -> None:
        for _ in range(count):
            self.groups.append([os.open(self.fresh(), os.O_RDONLY)])

    def dupped(self, count: int, path: Callable[[], str]) -> None:
        for _ in range(count):
            fd = os.open(path(), os.O_RDONLY)
            self.groups.append([fd, os.dup(fd), os.dup(fd), os.dup(fd)])

    def pipes(self, count: int) -> None:
        for _ in range(count):
            r, w = os.pipe()
            self.groups += [[r], [w]]

    def held(self) -> int:
        return sum(len(g) for g in self.groups)


def _open_scenario(opener: _Opener, scenario: str, n: int) -> None:
    if scenario == "distinct":
        opener.distinct(n)
    elif scenario == "dup":
        opener.dupped(n // 4, opener.fresh)
    elif scenario == "one-inode":
        opener.dupped(n // 4, lambda: opener.files.one)
    elif scenario == "mix":
        q = n // 4
        opener.distinct(q)
        opener.dupped(q // 4, opener.fresh)
        opener.dupped(q // 4, lambda: opener.files.one)
        opener.pipes(q // 2)
        opener.distinct(n - opener.held())
    else:
        raise ValueError(scenario)


def build(scenario: str, n: int, files: FileSet) -> tuple[list[int], Groups]:
    """Opens an fd set in the calling process: (fds ascending, true groups)."""
    opener = _Opener(files)
    try:
        _open_scenario(opener, scenario, n)
    except BaseException:
        close_all([fd for g in opener.groups for fd in g])
        raise
    fds = sorted(fd for g in opener.groups for fd in g)
    assert len(fds) == n, (scenario, n, len(fds))
    return fds, normalise(opener.groups)


def close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass
class FdSet:
    """An fd set held by ``pid`` (this process or a child), with its true groups."""

    scenario: str
    where: str
    n: int
    pid: int
    fds: list[int]
    truth: Groups


def forked(work: Callable[[], object]) -> int:
    """Forks a child that runs ``work()`` and leaves with os._exit (0, or 1 if it
    raised); returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def reap_or_kill(pids: list[int], timeout: float = 30.0) -> None:
    """Reaps each of ``pids`` once it exits (its lifeline closed by the caller), and
    kills one still running after ``timeout`` seconds, so a bench never leaves one."""
    for pid in pids:
        deadline = time.monotonic() + timeout
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def child_holding(setup: Callable[[], Any]) -> Iterator[tuple[int, Any]]:
    """Forks a child that runs ``setup()`` (opening fds), sends its JSON result back
    and waits until released; yields (child pid, result). Ends with os._exit."""
    data_r, data_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(data_r)
            os.close(hold_w)
            payload = json.dumps(setup()).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(data_w, view) :]
            os.close(data_w)
            os.read(hold_r, 1)  # EOF when the parent releases us
            code = 0
        finally:
            os._exit(code)
    os.close(data_w)
    os.close(hold_r)
    try:
        raw = _read_all(data_r)
        os.close(data_r)
        if not raw:
            raise RuntimeError(f"benchmark child {pid} failed to set up")
        yield pid, json.loads(raw)
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def fd_set(scenario: str, where: str, n: int, files: FileSet) -> Iterator[FdSet]:
    if where == "self":
        fds, truth = build(scenario, n, files)
        try:
            yield FdSet(scenario, where, n, os.getpid(), fds, truth)
        finally:
            close_all(fds)
    else:
        with child_holding(lambda: build(scenario, n, files)) as (pid, (fds, truth)):
            yield FdSet(scenario, where, n, pid, fds, [tuple(g) for g in truth])


# ---------------------------------------------------------------- commands

#: Runs argv[1:] as a child of this small, freshly exec'd interpreter and prints its
#: wall time and peak RSS. A child forked straight from the benchmark would report
#: the benchmark's own peak: exec carries the RSS high-water mark of the forked
#: (pre-exec) memory into ru_maxrss.
_LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
os.write(2, b"\\nbench-launcher %f %d %d\\n" % (wall, usage.ru_maxrss, code))
"""


def run_command(cmd: list[str], out_path: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit status) of ``cmd`` (an absolute path first),
    stdout to ``out_path``, stderr to ``out_path + ".err"``; wall time from fork to
    reaping, interpreter start included."""
    with open(out_path, "wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *cmd],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    err, _, line = done.stderr.rstrip().rpartition(b"\n")
    with open(out_path + ".err", "wb") as f:
        f.write(err)
    last = line.split()
    if len(last) != 4 or last[0] != b"bench-launcher":
        raise RuntimeError(f"the launcher failed: {done.stderr[-500:]!r}")
    return float(last[1]), int(last[2]) / 1024.0, int(last[3])


# ---------------------------------------------------------------- syscall floor

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Where ``make bench`` puts the floor binary; this variable names another one.
FLOOR_BINARY_VARIABLE = "KCMP_RS_SYSCALL_FLOOR"
FLOOR_BINARY = ROOT / "target" / "bench" / "syscall_floor"


@dataclass
class Floor:
    """What the floor binary measured: seconds per round (floor replays and full
    classifications, interleaved), the engine's counts of the recorded run, the
    operations one replay makes."""

    floor: list[float]
    engine: list[float]
    keys: int
    compares: int
    sames: int
    ops: int
    groups: int


def _rust_sources() -> Iterator[pathlib.Path]:
    yield from (ROOT / "src").rglob("*.rs")
    yield from (ROOT / "benches").glob("*.rs")
    yield from (ROOT / name for name in ("Cargo.toml", "Cargo.lock"))


def floor_binary() -> str:
    """The floor binary, or a failed test saying how to build it: never a skip, so a
    figure that cannot be measured is never silently left out."""
    given = os.environ.get(FLOOR_BINARY_VARIABLE)
    path = pathlib.Path(given) if given else FLOOR_BINARY
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no syscall floor binary at {path}: build it with `make bench` (or `make "
            "bench-build`), which runs `cargo bench --no-run --bench syscall_floor` and "
            f"copies the executable there; {FLOOR_BINARY_VARIABLE} names another one.",
            pytrace=False,
        )
    if not given:
        built = path.stat().st_mtime
        newer = [str(p.relative_to(ROOT)) for p in _rust_sources() if p.stat().st_mtime > built]
        if newer:
            pytest.fail(
                f"{path} is older than {', '.join(sorted(newer)[:3])}: rebuild it with "
                "`make bench` (or `make bench-build`).",
                pytrace=False,
            )
    return str(path)


def _floor_failure(proc: subprocess.Popen[bytes]) -> RuntimeError:
    """The binary's own message, once it has ended (it reads no more requests)."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    return RuntimeError(f"the syscall floor binary ended (status {proc.returncode}): {err}")


@contextlib.contextmanager
def floor_session(refs: list[tuple[int, int]]) -> Iterator[Callable[[int], Floor]]:
    """The floor binary with the classification of ``refs`` recorded once; yields a
    function that times that many rounds of its replay and of the full engine.

    One process for the whole session (``--serve``), so a benchmark interleaving rounds
    with its own calls starts no process between them: starting one that inherits
    thousands of fds slows this process's next classification by a fifth.

    Refs of this process are passed down at the same fd numbers (``pass_fds``) and
    classified there as the binary's own, so it makes the syscalls a classification in
    this process makes (fstat, F_DUPFD_QUERY); other pids are classified as they are.
    The binary runs with the library's thread limit and kcmp setting (environment).
    """
    me = os.getpid()
    own = sorted({fd for pid, fd in refs if pid == me})
    cmd = [floor_binary(), "--serve", "--threads", str(thread_limit_from_environment(os.environ))]
    if kcmp_disabled_by_environment(os.environ):
        cmd.append("--no-kcmp")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=own,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def measure(rounds: int) -> Floor:
        try:
            stdin.write(b"%d\n" % rounds)
            stdin.flush()
        except OSError:
            raise _floor_failure(proc) from None
        line = stdout.readline()
        if not line:
            raise _floor_failure(proc)
        doc = json.loads(line)
        return Floor(
            floor=[float(t) for t in doc["floor"]],
            engine=[float(t) for t in doc["engine"]],
            keys=int(doc["keys"]),
            compares=int(doc["compares"]),
            sames=int(doc["sames"]),
            ops=int(doc["ops"]),
            groups=int(doc["groups"]),
        )

    try:
        try:
            lines = "".join(f"{0 if pid == me else pid} {fd}\n" for pid, fd in refs)
            stdin.write(lines.encode() + b"\n")  # the blank line ends the refs
            stdin.flush()
        except OSError:
            raise _floor_failure(proc) from None
        yield measure
    finally:
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    if status != 0:
        raise RuntimeError(f"the syscall floor binary exited with status {status}")


def syscall_floor(refs: list[tuple[int, int]], rounds: int) -> Floor:
    """The syscall floor of ``classify_files(refs)``: ``rounds`` rounds of one
    ``floor_session``."""
    with floor_session(refs) as measure:
        return measure(rounds)
