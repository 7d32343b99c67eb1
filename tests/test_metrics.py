"""``kcmp_rs.metrics()`` and ``kcmp-rs metrics``: the families built from the two native
passes, the text exposition (parsed back by Prometheus's own Python client), the
textfile written whole, the HTTP server, and every way the command can fail. The real
node_exporter and Prometheus reading it: ``test_prom_e2e.py``."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kcmp_rs
import pytest
from _helpers import Spawn, drop_to_nobody, run_in_child
from _scan_helpers import missing_pid, run_cli
from kcmp_rs import _metrics
from kcmp_rs._escapes import Container, Escape, Escapes
from kcmp_rs._results import Skipped
from kcmp_rs.cli import _metrics as cli_metrics
from kcmp_rs.cli._common import CommandError
from kcmp_rs.cli._main import main
from prometheus_client.parser import text_string_to_metric_families

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

KINDS = ("pid", "mnt", "net", "user", "ipc", "uts", "cgroup")


def fake_census(**changes: Any) -> Any:
    """A census as ``_native.census`` gives it, everything zero unless changed."""
    base: dict[str, Any] = {
        "processes_read": 3,
        "skipped": [],
        "undecided": 0,
        "fds": [("", "", "FIFO", 4), ("podman", "abc", "REG", 2)],
        "shared": [("FIFO", 1)],
        "crossings": [(k, 0) for k in KINDS],
        "crossings_undecided": [(k, 0) for k in KINDS],
        "unpaired": [
            ("pipe", "reader", 0),
            ("pipe", "writer", 0),
            ("fifo", "reader", 0),
            ("fifo", "writer", 0),
        ],
        "epoll": [("open", 0), ("closed", 0), ("reused", 0)],
        "epoll_unread": [],
        "per_process": None,
        "syscalls": [("kcmp", 12), ("stat", 5)],
    }
    base.update(changes)
    return SimpleNamespace(**base)


def finding(severity: str, container: Container | None) -> Escape:
    return Escape(
        pid=10,
        command="sh",
        where="cwd",
        kind="outside-namespace",
        severity=severity,
        mnt_id=7,
        fs_type="ext4",
        path="/srv",
        mount_point=None,
        file_type="DIR",
        mode="?",
        container=container,
        mount_namespace=4026531841,
        shared_with=(),
        fs_shared_with=(),
    )


def audit(*findings: Escape, skipped: tuple[Skipped, ...] = ()) -> Escapes:
    return Escapes(
        findings=findings,
        skipped=skipped,
        processes_read=3,
        mount_namespaces_read=1,
        notes=(),
    )


def built(census: Any = None, found: Escapes | None = None) -> _metrics.Metrics:
    durations = {"census": 0.25, "escapes": 0.125, "total": 0.375}
    return _metrics._build(census or fake_census(), found or audit(), durations, 1700000000.5)


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each family's samples by their sorted labels, as Prometheus's client parses it."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.type == "gauge", fam.name
        assert fam.documentation, fam.name
        out[fam.name] = {tuple(sorted(s.labels.items())): s.value for s in fam.samples}
    return out


# ---- families ----


def test_every_family_has_help_type_and_the_prefix() -> None:
    text = built().exposition()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == [f.name for f in built().families]
    assert all(n.startswith("kcmp_rs_") for n in names)
    assert all(line.endswith(" gauge") for line in text.splitlines() if "# TYPE" in line)
    assert len(names) == len(set(names))
    assert set(parsed(text)) == set(names)


def test_the_census_counts_become_their_families() -> None:
    census = fake_census(
        crossings=[(k, 2 if k == "net" else 0) for k in KINDS],
        unpaired=[("pipe", "reader", 1), ("pipe", "writer", 0)],
        epoll=[("open", 3), ("closed", 1), ("reused", 2)],
    )
    fams = parsed(built(census).exposition())
    assert fams["kcmp_rs_processes_scanned"] == {(): 3}
    assert fams["kcmp_rs_open_fds"] == {
        (("container", ""), ("runtime", ""), ("type", "FIFO")): 4,
        (("container", "abc"), ("runtime", "podman"), ("type", "REG")): 2,
    }
    assert fams["kcmp_rs_shared_descriptions"] == {(("type", "FIFO"),): 1}
    assert fams["kcmp_rs_boundary_crossings"][(("kind", "net"),)] == 2
    assert len(fams["kcmp_rs_boundary_crossings"]) == 7
    assert fams["kcmp_rs_unpaired_channels"][(("kind", "pipe"), ("missing", "reader"))] == 1
    assert fams["kcmp_rs_epoll_registrations"] == {
        (("status", "open"),): 3,
        (("status", "closed"),): 1,
        (("status", "reused"),): 2,
    }
    assert fams["kcmp_rs_collection_syscalls"] == {
        (("call", "kcmp"),): 12,
        (("call", "stat"),): 5,
    }
    assert fams["kcmp_rs_collection_duration_seconds"][(("phase", "total"),)] == 0.375
    assert fams["kcmp_rs_last_collection_timestamp_seconds"] == {(): 1700000000.5}
    assert fams["kcmp_rs_collection_complete"] == {(): 1}


def test_skip_reasons_are_bounded_and_all_present() -> None:
    census = fake_census(
        skipped=[(5, "zombie"), (6, "error: Input/output error"), (7, "zombie")],
    )
    metrics = built(census)
    assert metrics.value("processes_skipped", reason="zombie") == 2
    assert metrics.value("processes_skipped", reason="error") == 1
    reasons = [dict(s.labels)["reason"] for s in metrics.family("processes_skipped").samples]
    assert reasons == list(_metrics.SKIP_REASONS)
    assert not metrics.complete


@pytest.mark.parametrize(
    "change",
    [
        {"skipped": [(5, "permission denied")]},
        {"undecided": 2},
        {"crossings_undecided": [("net", 1)]},
        {"epoll_unread": [(5, "kcmp(2) is unavailable")]},
    ],
)
def test_anything_unread_makes_the_collection_incomplete(change: dict[str, Any]) -> None:
    metrics = built(fake_census(**change))
    assert not metrics.complete
    assert metrics.value("collection_complete") == 0


def test_an_incomplete_escape_audit_makes_the_collection_incomplete() -> None:
    metrics = built(found=audit(skipped=(Skipped(9, "permission denied"),)))
    assert metrics.value("collection_complete") == 0


def test_escapes_by_container_and_severity() -> None:
    box = Container("podman", "f00d")
    found = audit(finding("high", box), finding("high", box), finding("info", None))
    metrics = built(found=found)
    fams = parsed(metrics.exposition())
    assert fams["kcmp_rs_escapes"] == {
        (("container", ""), ("runtime", ""), ("severity", "info")): 1,
        (("container", "f00d"), ("runtime", "podman"), ("severity", "high")): 2,
    }
    assert fams["kcmp_rs_escapes_found"] == {(): 2}
    assert metrics.value("escapes", runtime="podman") == 2


def test_per_process_series_only_when_asked() -> None:
    assert "kcmp_rs_process_open_fds" not in parsed(built().exposition())
    rows = [(41, b"sh", 5, 2), (42, None, 3, 0), (43, b'a"b\\c\nd\xff', 1, 1)]
    fams = parsed(built(fake_census(per_process=rows)).exposition())
    assert fams["kcmp_rs_process_open_fds"] == {
        (("command", "sh"), ("pid", "41")): 5,
        (("command", "?"), ("pid", "42")): 3,
        (("command", 'a"b\\c\nd\ufffd'), ("pid", "43")): 1,
    }
    assert fams["kcmp_rs_process_shared_fds"][(("command", "sh"), ("pid", "41"))] == 2


def test_label_values_are_escaped_as_the_format_says() -> None:
    text = built(fake_census(per_process=[(43, b'a"b\\c\nd', 1, 1)])).exposition()
    assert 'command="a\\"b\\\\c\\nd"' in text
    assert all(line.isprintable() for line in text.splitlines())


def test_value_and_family_lookups() -> None:
    metrics = built()
    assert metrics.family("kcmp_rs_open_fds") is metrics.family("open_fds")
    assert metrics.value("open_fds") == 6
    assert metrics.value("open_fds", type="DIR") == 0
    with pytest.raises(KeyError):
        metrics.family("nothing")


# ---- real collections ----


def test_metrics_agree_with_the_scan(spawn: Spawn) -> None:
    r, w = os.pipe()
    try:
        kids = [spawn().pid for _ in range(2)]
    finally:
        os.close(r)
        os.close(w)
    pids = [os.getpid(), *kids]
    metrics = kcmp_rs.metrics(pids)
    scan = kcmp_rs.scan(pids)
    by_processes = [d for d in scan.descriptions if len({m.pid for m in d.members}) > 1]
    assert metrics.value("shared_descriptions") == len(by_processes)
    assert metrics.value("processes_scanned") == scan.processes_read
    assert metrics.value("collection_duration_seconds", phase="total") > 0
    calls = [dict(s.labels)["call"] for s in metrics.family("collection_syscalls").samples]
    assert calls == ["engine_key", "engine_same", "engine_compare", "kcmp_epoll_tfd"]
    assert metrics.value("collection_syscalls", call="engine_key") > 0


def test_a_missing_pid_is_counted_as_skipped(spawn: Spawn) -> None:
    child = spawn()
    metrics = kcmp_rs.metrics([child.pid, missing_pid()])
    assert metrics.value("processes_skipped", reason="no such process") == 1
    assert metrics.value("collection_complete") == 0


@pytest.mark.parametrize(
    ("pids", "kwargs", "exc", "message"),
    [
        ([1.5], {}, TypeError, "each pid in pids must be an int, not float"),
        ([0], {}, ValueError, "each pid in pids must be a pid in 1..2147483647, got 0"),
        (3, {}, TypeError, "pids must be an iterable of ints, not int"),
        ([], {"per_process": "yes"}, TypeError, "per_process must be a bool, not str"),
    ],
)
def test_bad_arguments(pids: Any, kwargs: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        kcmp_rs.metrics(pids, **kwargs)
    assert str(info.value) == message


# ---- the command ----


def test_the_command_prints_the_exposition(spawn: Spawn) -> None:
    child = spawn()
    done = run_cli("metrics", "-p", str(child.pid), "--per-process")
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    fams = parsed(done.stdout.decode())
    assert fams["kcmp_rs_processes_scanned"] == {(): 1}
    (labels,) = fams["kcmp_rs_process_open_fds"]
    assert dict(labels)["pid"] == str(child.pid)


def test_textfile_is_written_whole_and_nothing_else_is_left(spawn: Spawn, tmp_path: Path) -> None:
    child = spawn()
    (tmp_path / "kcmp_rs.prom").write_text("old\n")
    done = run_cli("metrics", "-p", str(child.pid), "--textfile", str(tmp_path))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert os.listdir(tmp_path) == ["kcmp_rs.prom"]
    text = (tmp_path / "kcmp_rs.prom").read_text()
    assert parsed(text)["kcmp_rs_processes_scanned"] == {(): 1}
    assert (tmp_path / "kcmp_rs.prom").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("name", "reason"),
    [("absent", "No such file or directory"), ("a-file", "not a directory")],
)
def test_a_missing_textfile_directory_is_one_line_and_exit_1(
    tmp_path: Path, name: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("")
    given = tmp_path / name
    done = run_cli("metrics", "-p", str(os.getpid()), "--textfile", str(given))
    assert done.returncode == 1
    assert done.stderr.decode() == f"kcmp-rs: textfile directory {given}: {reason}\n"
    assert done.stdout == b""
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


@pytest.fixture
def open_to_all() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path lies under a 0700 one)."""
    top = Path(tempfile.mkdtemp(prefix="kcmp-metrics-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_an_unwritable_textfile_directory_leaves_no_file(open_to_all: Path) -> None:
    target = open_to_all / "ro"
    target.mkdir(mode=0o555)

    def as_nobody() -> tuple[int, str]:
        drop_to_nobody()
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            status = main(["metrics", "-p", str(os.getpid()), "--textfile", str(target)])
        return status, said.getvalue()

    status, said = run_in_child(as_nobody).unwrap()
    assert status == 1
    assert said == f"kcmp-rs: cannot write {target}/kcmp_rs.prom: Permission denied\n"
    assert list(target.iterdir()) == []


def test_write_textfile_removes_its_temporary_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CommandError) as info:
        cli_metrics.write_textfile(str(tmp_path), "x 1\n")
    assert str(info.value) == f"cannot write {tmp_path}/kcmp_rs.prom: {os.strerror(errno.EXDEV)}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere"], "argument --listen: expected HOST:PORT, got 'nowhere'"),
        (["--listen", "127.0.0.1:99999"], "expected HOST:PORT, got '127.0.0.1:99999'"),
        (["--min-interval", "-1"], "expected a number of seconds >= 0, got '-1'"),
        (["--min-interval", "nan"], "expected a number of seconds >= 0, got 'nan'"),
        (["--min-interval", "soon"], "expected a number of seconds, got 'soon'"),
        (["--textfile", "/tmp", "--listen", "127.0.0.1:0"], "not allowed with argument"),
        (
            ["--min-interval", "5"],
            "kcmp-rs metrics: error: --min-interval needs --listen HOST:PORT",
        ),
    ],
)
def test_argument_errors_exit_2(args: list[str], message: str) -> None:
    done = run_cli("metrics", *args)
    assert done.returncode == 2
    assert message in done.stderr.decode()


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_in_use_is_a_clear_error(busy_port: int) -> None:
    done = run_cli("metrics", "-p", str(os.getpid()), "--listen", f"127.0.0.1:{busy_port}")
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"kcmp-rs: cannot listen on 127.0.0.1:{busy_port}: address already in use\n"
    )


def test_an_address_not_of_this_host_is_a_clear_error() -> None:
    # 192.0.2.0/24 is TEST-NET-1: no interface of this machine has it.
    done = run_cli("metrics", "-p", str(os.getpid()), "--listen", "192.0.2.1:0")
    assert done.returncode == 1
    reason = os.strerror(errno.EADDRNOTAVAIL)
    assert done.stderr.decode() == f"kcmp-rs: cannot listen on 192.0.2.1:0: {reason}\n"


def http_get(url: str) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET, an error status included."""
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


class Server:
    """A ``kcmp-rs metrics --listen HOST:0`` of this test, its address read from
    the line it writes on stderr; killed if still running at the end."""

    def __init__(self, *args: str, host: str = "127.0.0.1") -> None:
        cmd = [sys.executable, "-m", "kcmp_rs", "metrics", "--listen", f"{host}:0", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode()
        assert line.startswith(f"kcmp-rs: serving metrics on http://{host}:"), line
        self.url = line.split()[-1]

    def get(self, path: str = "/metrics") -> tuple[int, str, str]:
        return http_get(self.url.replace("/metrics", path))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, bytes, bytes]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def server_args() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def test_listen_serves_metrics_and_sigterm_ends_it(spawn: Spawn, server_args: list[Server]) -> None:
    child = spawn()
    server = Server("-p", str(child.pid), "--min-interval", "3600")
    server_args.append(server)
    status, kind, first = server.get()
    assert status == 200
    assert kind == cli_metrics.CONTENT_TYPE
    assert parsed(first)["kcmp_rs_processes_scanned"] == {(): 1}
    # Within --min-interval a scrape is answered from the last collection.
    assert server.get()[2] == first
    assert server.get("/")[0] == 404
    assert server.stop() == (0, b"", b"")


def test_listen_collects_again_after_the_interval(spawn: Spawn, server_args: list[Server]) -> None:
    child = spawn()
    server = Server("-p", str(child.pid), "--min-interval", "0")
    server_args.append(server)
    stamps = set()
    for _ in range(3):
        text = server.get()[2]
        stamps.add(parsed(text)["kcmp_rs_last_collection_timestamp_seconds"][()])
    assert len(stamps) == 3
    assert server.stop(signal.SIGINT)[0] == 130


def test_concurrent_scrapes_share_one_collection(spawn: Spawn, server_args: list[Server]) -> None:
    child = spawn()
    server = Server("-p", str(child.pid), "--min-interval", "3600")
    server_args.append(server)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(server.get()[2])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(answers) == 4
    assert len(set(answers)) == 1
    assert server.stop()[0] == 0


def test_the_timestamp_is_recent(spawn: Spawn) -> None:
    child = spawn()
    before = time.time()
    stamp = kcmp_rs.metrics([child.pid]).value("last_collection_timestamp_seconds")
    assert before <= stamp <= time.time() + 1


@contextlib.contextmanager
def served_in_process(collect: Any) -> Iterator[str]:
    """The command's own server and handler over ``collect``, in a thread of this
    test: the URL of its /metrics. Shut down and joined on every path."""
    handler = cli_metrics._handler(cli_metrics._Collections(collect, 0.0))
    with cli_metrics._server("127.0.0.1", 0, handler) as server:
        worker = threading.Thread(target=server.serve_forever)
        worker.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
        finally:
            server.shutdown()
            worker.join()


def test_a_failed_collection_is_a_500_and_the_next_scrape_collects_again() -> None:
    calls: list[int] = []

    def collect() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ProcessLookupError(errno.ESRCH, "gone")
        return "kcmp_rs_up 1\n"

    with served_in_process(collect) as url:
        status, _, body = http_get(url)
        assert (status, body) == (500, "collection failed: [Errno 3] gone\n")
        status, _, body = http_get(url)
        assert (status, body) == (200, "kcmp_rs_up 1\n")


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_listen_on_ipv6_loopback(spawn: Spawn, server_args: list[Server]) -> None:
    child = spawn()
    server = Server("-p", str(child.pid), host="[::1]")
    server_args.append(server)
    assert server.url.startswith("http://[::1]:")
    status, _, text = server.get()
    assert status == 200
    assert parsed(text)["kcmp_rs_processes_scanned"] == {(): 1}
    assert server.stop() == (0, b"", b"")
