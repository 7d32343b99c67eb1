"""``kcmp-rs metrics`` with the real components (issue 23): Debian's node_exporter
exposes ``--textfile``'s file, Prometheus scrapes it and a ``--listen`` instance, and
queries over its HTTP API give what the scan of processes the test built says.

The processes are the test's own children (``holding``), each keeping only the fds it
is given (its 0-2 on /dev/null of its own), so that every count is known: a pipe
whose read end three processes hold, one of them in a new network namespace with the
write end too (two descriptions crossing the net boundary), and a pipe whose read end
no process holds. The first tests check the helpers of ``_prom.py`` themselves on a
hand-written file. The planted escape in a container, with the shipped alert firing,
is ``make container-test``'s (``tests/container/metrics_scenarios.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import kcmp_rs
import pytest
from _checks import KCMP_MISSING
from _helpers import fork, keep_only, libc
from _prom import (
    Sample,
    Series,
    Server,
    check_metrics,
    declared_families,
    http_get,
    node_exporter,
    parse_exposition,
    prometheus,
    query,
    served,
    stop,
)

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

TIMEOUT = 60.0
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
TEXTFILE = "kcmp_rs.prom"
KINDS = ("pid", "mnt", "net", "user", "ipc", "uts", "cgroup")
#: Every family of the contract, without --per-process.
FAMILIES = {
    f"kcmp_rs_{name}"
    for name in (
        "processes_scanned",
        "processes_skipped",
        "open_fds",
        "shared_descriptions",
        "boundary_crossings",
        "boundary_crossings_undecided",
        "epoll_registrations",
        "unpaired_channels",
        "undecided_fds",
        "collection_duration_seconds",
        "collection_syscalls",
        "collection_complete",
        "last_collection_timestamp_seconds",
    )
}

HAND_WRITTEN = """\
# HELP kcmp_e2e_answer A value the test wrote by hand.
# TYPE kcmp_e2e_answer gauge
kcmp_e2e_answer{side="left"} 42
kcmp_e2e_answer{side="right"} 7
# HELP kcmp_rs_escapes Escape audit findings.
# TYPE kcmp_rs_escapes gauge
kcmp_rs_escapes{runtime="podman",container="c0ffee",severity="high"} 1
"""


def _write_atomically(directory: str, name: str, text: str) -> None:
    """As --textfile must: node_exporter may read the directory at any moment."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".e2e-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, os.path.join(directory, name))


def _value(samples: Sequence[Sample], **labels: str) -> list[float]:
    return sorted(s.value for s in samples if labels.items() <= s.labels.items())


# ---- the helpers, on a hand-written file ----


def test_node_exporter_exposes_a_textfile_and_prometheus_scrapes_it() -> None:
    with node_exporter() as exporter:
        _write_atomically(exporter.textfiles, "e2e.prom", HAND_WRITTEN)
        status, body = http_get(exporter.server.url("/metrics"))
        assert status == 200
        exposed = parse_exposition(body)
        assert exposed[("node_textfile_scrape_error", frozenset())] == 0
        assert exposed[("kcmp_e2e_answer", frozenset({("side", "left")}))] == 42
        with prometheus({"node": [exporter.server.address]}) as prom:
            got = query(prom, 'kcmp_e2e_answer{job="node"}', lambda s: len(s) == 2)
            assert _value(got, side="left") == [42.0]
            assert _value(got, side="right") == [7.0]
            # The shipped rules are loaded and evaluated: the escape alert fires at once.
            firing = query(prom, 'ALERTS{alertname="KcmpRsEscape",alertstate="firing"}')
            assert [(s.labels["container"], s.labels["severity"]) for s in firing] == [
                ("c0ffee", "critical")
            ]


def test_node_exporter_reports_a_file_it_cannot_parse() -> None:
    """The scrape-error gauge the tests rely on does turn 1."""
    with node_exporter() as exporter:
        _write_atomically(exporter.textfiles, "bad.prom", 'kcmp_e2e_answer{side="left} 1\n')
        status, body = http_get(exporter.server.url("/metrics"))
        assert status == 200
        assert parse_exposition(body)[("node_textfile_scrape_error", frozenset())] == 1


def test_promtool_check_metrics_accepts_good_text_and_rejects_bad() -> None:
    good = check_metrics(HAND_WRITTEN)
    assert (good.returncode, good.stdout, good.stderr) == (0, "", "")
    unparsable = check_metrics('kcmp_e2e_answer{side="left} 1\n')
    assert unparsable.returncode == 1 and "parsing error" in unparsable.stderr
    # A counter without _total: the naming conventions are checked too.
    lint = check_metrics("# HELP x_seconds a\n# TYPE x_seconds counter\nx_seconds 1\n")
    assert lint.returncode != 0 and "_total" in lint.stdout + lint.stderr


def test_parse_exposition_refuses_a_cut_file() -> None:
    assert len(parse_exposition(HAND_WRITTEN)) == 3
    no_newline = HAND_WRITTEN[:-1]
    no_value = HAND_WRITTEN[: HAND_WRITTEN.index("42")] + "\n"
    in_labels = HAND_WRITTEN[: HAND_WRITTEN.index('"left') + 3] + "\n"
    for cut in (no_newline, no_value, in_labels):
        with pytest.raises(ValueError):
            parse_exposition(cut)


def test_served_stops_a_server_that_never_gets_ready() -> None:
    """A server that exits before answering is reported with its output, not waited for."""
    argv = [sys.executable, "-c", "import sys; sys.exit('no way: ' + sys.argv[1])"]

    def start() -> None:
        with served("quitter", lambda address: [*argv, address], "/"):
            pass  # pragma: no cover - never reached

    with pytest.raises(RuntimeError, match=r"exited with 1 before it was ready:\nno way: 127"):
        start()


# ---- the processes the metrics count ----


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    fds: tuple[int, ...]


def _hold(command: str, keep: tuple[int, ...], flags: int, report_w: int) -> None:
    """A holder's life, in the forked child: never returns. Released by SIGUSR1, not by
    a pipe: a control pipe's end would be one more pipe for the metrics to count."""
    code = 1
    try:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        if flags and libc.unshare(flags) != 0:
            raise OSError(ctypes.get_errno(), "unshare failed")
        keep_only({report_w, *keep})
        with open("/proc/self/comm", "w") as f:
            f.write(command)
        os.write(report_w, b"ready")
        os.close(report_w)
        signal.sigwait({signal.SIGUSR1})
        code = 0
    finally:
        os._exit(code)


def _reap(pid: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.005)


@contextlib.contextmanager
def holding(command: str, keep: tuple[int, ...] = (), flags: int = 0) -> Iterator[Holder]:
    """A child of ours holding ``keep`` (our fds, inherited) and nothing else but 0-2,
    after unshare(``flags``); named ``command``; released and reaped on leaving."""
    assert all(fd > 2 for fd in keep), keep
    report_r, report_w = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(report_r)
        _hold(command, keep, flags, report_w)
    os.close(report_w)
    try:
        with os.fdopen(report_r, "rb") as f:
            ready = f.read()
        assert ready == b"ready", f"holder {command} failed before holding its fds"
        yield Holder(pid, command, keep)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
        status = _reap(pid)
    assert status == 0, f"holder {command} ended with wait status {status:#x}"


@dataclass(frozen=True)
class Family:
    """``a`` holds a pipe's read and write ends and the write end of a second pipe;
    ``b`` the first pipe's read end; ``netns``, in a network namespace of its own, the
    first pipe's two ends. The second pipe's read end was closed everywhere."""

    a: Holder
    b: Holder
    netns: Holder

    @property
    def pids(self) -> list[int]:
        return [self.a.pid, self.b.pid, self.netns.pid]

    @property
    def arg(self) -> str:
        return ",".join(map(str, self.pids))


#: What the family holds, as (family, labels, value): sums over the series whose labels
#: include these (Prometheus: ``sum by (job) (...)``). 0-2 are /dev/null (CHR) in each.
BUILT: list[tuple[str, dict[str, str], float]] = [
    ("kcmp_rs_processes_scanned", {}, 3),
    ("kcmp_rs_processes_skipped", {}, 0),
    ("kcmp_rs_open_fds", {"type": "FIFO"}, 3 + 1 + 2),
    ("kcmp_rs_open_fds", {"type": "CHR"}, 3 * 3),
    ("kcmp_rs_open_fds", {}, 15),
    # The first pipe's read end (a, b, netns) and its write end (a, netns).
    ("kcmp_rs_shared_descriptions", {"type": "FIFO"}, 2),
    ("kcmp_rs_shared_descriptions", {}, 2),
    *(("kcmp_rs_boundary_crossings", {"kind": k}, 2 if k == "net" else 0) for k in KINDS),
    ("kcmp_rs_boundary_crossings_undecided", {}, 0),
    ("kcmp_rs_unpaired_channels", {"kind": "pipe", "missing": "reader"}, 1),
    ("kcmp_rs_unpaired_channels", {}, 1),
    ("kcmp_rs_epoll_registrations", {}, 0),
    ("kcmp_rs_undecided_fds", {}, 0),
    ("kcmp_rs_collection_complete", {}, 1),
]


@pytest.fixture
def family() -> Iterator[Family]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a holder in a network namespace of its own")
    if KCMP_MISSING is not None:
        pytest.skip(KCMP_MISSING)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    with contextlib.ExitStack() as stack:
        try:
            a = stack.enter_context(holding("kcmp-e2e-a", (r1, w1, w2)))
            b = stack.enter_context(holding("kcmp-e2e-b", (r1,)))
            netns = stack.enter_context(holding("kcmp-e2e-netns", (r1, w1), CLONE_NEWNET))
        finally:
            for fd in (r1, w1, r2, w2):  # ours must not count: the holders' alone
                os.close(fd)
        yield Family(a, b, netns)


def _total(exposed: dict[Series, float], name: str, labels: dict[str, str]) -> float:
    return sum(v for (n, lab), v in exposed.items() if n == name and labels.items() <= lab)


def _scan_truth(pids: list[int]) -> list[tuple[str, dict[str, str], float]]:
    """BUILT's figures as kcmp_rs.scan counts them."""
    every = kcmp_rs.scan(pids, include_unshared=True)
    descriptions = every.descriptions
    fds = Counter(d.type for d in descriptions for _ in d.members)
    shared = Counter(d.type for d in descriptions if len({m.pid for m in d.members}) > 1)
    sides: dict[str, set[str]] = {}
    for d in descriptions:
        if d.target.startswith("pipe:"):
            sides.setdefault(d.target, set()).update(d.mode)
    crossings = {
        k: sum(len(d.boundaries) > 1 for d in kcmp_rs.scan(pids, boundary=k).descriptions)
        for k in KINDS
    }
    no_reader = sum("r" not in s for s in sides.values())
    return [
        ("kcmp_rs_processes_scanned", {}, every.processes_read),
        ("kcmp_rs_processes_skipped", {}, len(every.skipped)),
        ("kcmp_rs_open_fds", {"type": "FIFO"}, fds["FIFO"]),
        ("kcmp_rs_open_fds", {"type": "CHR"}, fds["CHR"]),
        ("kcmp_rs_open_fds", {}, sum(fds.values())),
        ("kcmp_rs_shared_descriptions", {"type": "FIFO"}, shared["FIFO"]),
        ("kcmp_rs_shared_descriptions", {}, sum(shared.values())),
        *(("kcmp_rs_boundary_crossings", {"kind": k}, crossings[k]) for k in KINDS),
        ("kcmp_rs_boundary_crossings_undecided", {}, 0),
        ("kcmp_rs_unpaired_channels", {"kind": "pipe", "missing": "reader"}, no_reader),
        ("kcmp_rs_unpaired_channels", {}, sum(len(s) == 1 for s in sides.values())),
        ("kcmp_rs_epoll_registrations", {}, 0),
        ("kcmp_rs_undecided_fds", {}, len(every.undecided)),
        ("kcmp_rs_collection_complete", {}, int(not every.skipped and not every.undecided)),
    ]


def _metrics(
    *args: str, timeout: float = TIMEOUT, **popen: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kcmp_rs", "metrics", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


def test_the_family_is_what_the_scan_sees(family: Family) -> None:
    """The expectations the other tests hold the metrics to are the scan's."""
    assert _scan_truth(family.pids) == BUILT


def test_the_exposition_on_stdout_counts_the_family(family: Family) -> None:
    done = _metrics("-p", family.arg, "--per-process")
    assert (done.returncode, done.stderr) == (0, "")
    exposed = parse_exposition(done.stdout)
    assert declared_families(done.stdout) >= FAMILIES | {
        "kcmp_rs_process_open_fds",
        "kcmp_rs_process_shared_fds",
    }
    got = [(name, labels, _total(exposed, name, labels)) for name, labels, _ in BUILT]
    assert got == BUILT
    per_process = {
        (dict(lab)["pid"], dict(lab)["command"]): v
        for (name, lab), v in exposed.items()
        if name == "kcmp_rs_process_open_fds"
    }
    assert per_process == {
        (str(family.a.pid), "kcmp-e2e-a"): 6,
        (str(family.b.pid), "kcmp-e2e-b"): 4,
        (str(family.netns.pid), "kcmp-e2e-netns"): 5,
    }
    checked = check_metrics(done.stdout)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


# ---- node_exporter and Prometheus ----


def _check_jobs(prom: Server, jobs: Sequence[str]) -> None:
    """Every figure of BUILT, as each job's series say it, over the HTTP API."""
    for name, labels, value in BUILT:
        matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
        expr = f"sum by (job) ({name}{{{matchers}}})"
        query(prom, expr, _each_job_says(dict.fromkeys(jobs, value)))


def _each_job_says(want: dict[str, float]) -> Callable[[list[Sample]], bool]:
    return lambda got: {s.labels["job"]: s.value for s in got} == want


def test_node_exporter_and_the_exporter_reach_prometheus_with_the_scans_figures(
    family: Family,
) -> None:
    with node_exporter() as exporter:
        done = _metrics("-p", family.arg, "--textfile", exporter.textfiles)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert os.listdir(exporter.textfiles) == [TEXTFILE]
        with open(os.path.join(exporter.textfiles, TEXTFILE)) as f:
            written = f.read()
        checked = check_metrics(written)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
        # node_exporter runs as another user (as root we start it as 65534): it read it.
        status, body = http_get(exporter.server.url("/metrics"))
        exposed = parse_exposition(body)
        assert status == 200 and exposed[("node_textfile_scrape_error", frozenset())] == 0
        assert _total(exposed, "kcmp_rs_boundary_crossings", {"kind": "net"}) == 2

        def listen(address: str) -> list[str]:
            args = ["-p", family.arg, "--per-process", "--listen", address]
            return [sys.executable, "-m", "kcmp_rs", "metrics", *args]

        with served("kcmp-rs-metrics", listen, "/metrics") as kcmp:
            jobs = {"node": [exporter.server.address], "kcmp": [kcmp.address]}
            with prometheus(jobs) as prom:
                _check_jobs(prom, list(jobs))
                got = query(prom, 'kcmp_rs_process_open_fds{job="kcmp"}', lambda s: len(s) == 3)
                assert sorted(
                    (s.labels["command"], int(s.labels["pid"]), s.value) for s in got
                ) == [
                    ("kcmp-e2e-a", family.a.pid, 6.0),
                    ("kcmp-e2e-b", family.b.pid, 4.0),
                    ("kcmp-e2e-netns", family.netns.pid, 5.0),
                ]
                # Nothing was planted: the escape alert stays silent.
                assert not query(prom, 'ALERTS{alertname="KcmpRsEscape"}', lambda s: True)
            assert stop(kcmp.proc) == 0, kcmp.output()  # SIGTERM ends it cleanly


# ---- --textfile's failures ----


def _one_error_line(done: subprocess.CompletedProcess[str], *names: str) -> str:
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcmp-rs: "), done.stderr
    assert all(name in lines[0] for name in names), lines[0]
    return lines[0]


@pytest.fixture
def lone() -> Iterator[Holder]:
    with holding("kcmp-e2e-lone") as holder:
        yield holder


def test_a_missing_textfile_directory_is_one_line_and_no_file(
    lone: Holder, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "missing"
    done = _metrics("-p", str(lone.pid), "--textfile", str(missing))
    _one_error_line(done, str(missing))
    assert not missing.exists() and os.listdir(tmp_path) == []


def _read_only_view(directory: str) -> Callable[[], None]:
    """For ``preexec_fn``: ``directory`` read-only in a mount namespace of the command's
    own, which ends with it (nothing stays mounted, whatever happens to the test)."""
    path = directory.encode()

    mounts = [
        (b"none", b"/", MS_REC | MS_PRIVATE),  # nothing done here reaches the host's
        (path, path, MS_BIND),
        (None, path, MS_REMOUNT | MS_BIND | MS_RDONLY),
    ]

    def setup() -> None:
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
        for source, target, flags in mounts:
            if libc.mount(source, target, None, flags, None) != 0:
                raise OSError(ctypes.get_errno(), f"mount of {target!r} failed")

    return setup


def test_an_unwritable_textfile_directory_is_one_line_and_no_file(
    lone: Holder, tmp_path: pathlib.Path
) -> None:
    directory = tmp_path / "textfiles"
    directory.mkdir()
    if os.geteuid() == 0:  # root writes whatever the mode: a read-only mount stops it
        popen: dict[str, Any] = {"preexec_fn": _read_only_view(str(directory))}
    else:
        directory.chmod(0o555)
        popen = {}
    done = _metrics("-p", str(lone.pid), "--textfile", str(directory), **popen)
    _one_error_line(done, str(directory))
    assert os.listdir(directory) == []


def test_a_failed_rename_leaves_no_temporary_file(lone: Holder, tmp_path: pathlib.Path) -> None:
    """The temporary file was written, the rename fails (kcmp_rs.prom is a directory
    here): it is removed, and the directory is as it was."""
    (tmp_path / TEXTFILE / "in-the-way").mkdir(parents=True)
    done = _metrics("-p", str(lone.pid), "--textfile", str(tmp_path))
    _one_error_line(done, TEXTFILE)
    assert os.listdir(tmp_path) == [TEXTFILE]
    assert os.listdir(tmp_path / TEXTFILE) == ["in-the-way"]


# ---- 100 writes under a reader ----

WRITES = 100
WRITERS = 4  # at once: the timer's run and a manual one may overlap too


@dataclass
class Watch:
    """What the reader saw: reads of the file, distinct versions, what was wrong."""

    reads: int = 0
    versions: set[str] = field(default_factory=set)
    wrong: list[str] = field(default_factory=list)


def _read_while(directory: str, writing: threading.Event, watch: Watch) -> None:
    path = os.path.join(directory, TEXTFILE)
    seen = False
    while writing.is_set() and len(watch.wrong) < 20:
        names = os.listdir(directory)
        watch.wrong += [f"{n} appeared" for n in names if n.endswith(".prom") and n != TEXTFILE]
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            if seen:  # a rename replaces it: it never goes away once there
                watch.wrong.append(f"{TEXTFILE} vanished")
            continue
        seen = True
        watch.reads += 1
        try:
            parse_exposition(text)
        except ValueError as e:
            watch.wrong.append(f"partial: {e}")
            continue
        if not declared_families(text) >= FAMILIES:
            watch.wrong.append(f"cut: {sorted(FAMILIES - declared_families(text))} missing")
        watch.versions.add(text)


def _write(directory: str, pid: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kcmp_rs", "metrics", "-p", str(pid), "--textfile", directory],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# About 20 s on two cores (100 interpreters starting): make test-slow's, as CI runs it.
@pytest.mark.slow
def test_a_reader_never_sees_a_partial_file_during_100_writes(
    lone: Holder, tmp_path: pathlib.Path
) -> None:
    directory = str(tmp_path)
    watch = Watch()
    writing = threading.Event()
    writing.set()
    reader = threading.Thread(target=_read_while, args=(directory, writing, watch))
    reader.start()
    outcomes: list[tuple[int, str, str]] = []
    running: list[subprocess.Popen[str]] = []
    try:
        for _ in range(WRITES):
            if len(running) == WRITERS:
                out, err = running[0].communicate(timeout=TIMEOUT)
                outcomes.append((running.pop(0).returncode, out, err))
            running.append(_write(directory, lone.pid))
        for proc in running:
            out, err = proc.communicate(timeout=TIMEOUT)
            outcomes.append((proc.returncode, out, err))
    finally:
        for proc in running:
            _stop_writer(proc)
        writing.clear()
        reader.join()
    assert outcomes == [(0, "", "")] * WRITES
    assert watch.wrong == []
    # The reader kept up: it saw the file replaced, not one version the whole time.
    assert watch.reads >= WRITES and len(watch.versions) >= 10, (watch.reads, len(watch.versions))
    assert os.listdir(directory) == [TEXTFILE]


def _stop_writer(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


# ---- --listen ----


def test_a_port_in_use_is_a_clear_error(lone: Holder) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _metrics("-p", str(lone.pid), "--listen", f"127.0.0.1:{port}")
    line = _one_error_line(done)
    assert line.startswith(f"kcmp-rs: cannot listen on 127.0.0.1:{port}: "), line
