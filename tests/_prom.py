"""The real Prometheus components, for the end-to-end tests of ``kcmp-rs metrics``
(``tests/test_prom_e2e.py``, ``tests/container/metrics_scenarios.py``): Debian's
``prometheus-node-exporter``, ``prometheus`` and ``promtool``, which
``scripts/setup-prometheus.sh`` installs (``make test`` runs it).

- ``node_exporter()``: node_exporter with its textfile collector alone, reading a
  temporary directory (``NodeExporter.textfiles``); as root it runs as uid 65534, as
  Debian runs it as its own user, so a file it cannot read shows.
- ``prometheus(jobs)``: Prometheus scraping ``{job: [host:port, ...]}`` every second
  and evaluating the shipped rules (``deploy/prometheus/kcmp_rs-rules.yml``) every
  second, its configuration and storage in a temporary directory.
- ``served(argv_for, ready_path)``: any server given its listen address, started on a
  free loopback port (another one when a race took it), ready once ``ready_path``
  answers 200; ``stop()`` ends it (SIGTERM, SIGKILL after a deadline).
- ``query(server, expr, until)``: Prometheus's HTTP API, polled until ``until`` holds
  for the samples or a deadline passes.
- ``parse_exposition(text)``, ``declared_families(text)`` and ``check_metrics(text)``
  (``promtool check metrics``).

Every server is stopped and every temporary directory removed on every path, a failing
test's included. ``binary(name)`` skips the test, saying what to install, when a tool
is missing (and only then).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = [
    "NODE_EXPORTER",
    "PROMETHEUS",
    "PROMTOOL",
    "RULES",
    "NodeExporter",
    "Sample",
    "Series",
    "Server",
    "binary",
    "check_metrics",
    "declared_families",
    "http_get",
    "node_exporter",
    "parse_exposition",
    "prometheus",
    "query",
    "served",
    "stop",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "deploy", "prometheus", "kcmp_rs-rules.yml")

NODE_EXPORTER = "prometheus-node-exporter"
PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
_PACKAGES = {
    NODE_EXPORTER: "prometheus-node-exporter",
    PROMETHEUS: "prometheus",
    PROMTOOL: "prometheus",
}

#: Seconds a server gets to answer its readiness path, a query to come true, a stop.
START_TIMEOUT = 60.0
QUERY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: Free ports tried when another process takes the one picked before we bind it.
PORT_ATTEMPTS = 5
NOBODY = 65534

# Loopback only: a proxy from the environment (http_proxy) must never see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def binary(name: str) -> str:
    """The path of a Prometheus tool; skips the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (Debian package {_PACKAGES[name]}; as root, "
            "make test installs it: scripts/setup-prometheus.sh)"
        )
    return path


def free_port() -> int:
    """A loopback port free a moment ago (the kernel picks it; it may be taken again
    before the server binds it: ``served`` then tries another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url``: (status, body), an error status included; OSError when no answer."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- servers ----


@dataclass
class Server:
    """A server process we started: its listen address (host:port) and output log."""

    name: str
    address: str
    proc: subprocess.Popen[bytes]
    log: str

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``; reaps it. Returns
    its exit status as ``Popen.returncode`` gives it (-9 after SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _ready(server: Server, path: str) -> bool:
    """Polls ``path`` until it answers 200 (True) or the process exits (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    while server.proc.poll() is None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_get(server.url(path), timeout=2.0)[0] == 200:
                return True
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{server.name} did not answer {path} within {START_TIMEOUT:.0f} s:\n"
                + server.output()
            )
        time.sleep(0.05)
    return False


def _start(
    name: str, argv_for: Callable[[str], list[str]], ready_path: str, work: str, **popen: Any
) -> Server:
    for attempt in range(PORT_ATTEMPTS):
        address = f"127.0.0.1:{free_port()}"
        log = os.path.join(work, f"{name}-{attempt}.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv_for(address),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                **popen,
            )
        server = Server(name, address, proc, log)
        try:
            if _ready(server, ready_path):
                return server
        except BaseException:
            stop(proc)
            raise
        stop(proc)
        if "address already in use" not in server.output():
            raise RuntimeError(
                f"{name} exited with {proc.returncode} before it was ready:\n{server.output()}"
            )
    raise RuntimeError(f"{name}: {PORT_ATTEMPTS} free ports were all taken before it bound one")


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[str]:
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def served(
    name: str, argv_for: Callable[[str], list[str]], ready_path: str, **popen: Any
) -> Iterator[Server]:
    """A server started with ``argv_for("127.0.0.1:PORT")`` on a free port, ready once
    ``ready_path`` answers 200; stopped on leaving (the caller may stop it first to
    check its exit status: ``stop`` is idempotent)."""
    with _workdir(f"kcmp-{name}-") as work:
        server = _start(name, argv_for, ready_path, work, **popen)
        try:
            yield server
        finally:
            stop(server.proc)


@dataclass
class NodeExporter:
    server: Server
    #: The directory its textfile collector reads (readable by the exporter's user).
    textfiles: str


def _as_nobody() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


@contextlib.contextmanager
def node_exporter() -> Iterator[NodeExporter]:
    """node_exporter with only its textfile collector, on a temporary directory."""
    exe = binary(NODE_EXPORTER)
    with _workdir("kcmp-textfiles-") as textfiles:
        os.chmod(textfiles, 0o755)  # mkdtemp's 0700 would hide it from uid 65534

        def argv(address: str) -> list[str]:
            return [
                exe,
                f"--web.listen-address={address}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textfiles}",
            ]

        with served("node_exporter", argv, "/metrics", **_as_nobody()) as server:
            yield NodeExporter(server, textfiles)


@contextlib.contextmanager
def prometheus(
    jobs: Mapping[str, Sequence[str]], rule_files: Sequence[str] = (RULES,)
) -> Iterator[Server]:
    """Prometheus scraping each job's targets and evaluating ``rule_files`` every second."""
    exe = binary(PROMETHEUS)
    with _workdir("kcmp-prometheus-") as work:
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": list(rule_files),
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        }
        path = os.path.join(work, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML

        def argv(address: str) -> list[str]:
            return [
                exe,
                f"--config.file={path}",
                f"--storage.tsdb.path={os.path.join(work, 'data')}",
                f"--web.listen-address={address}",
            ]

        with served("prometheus", argv, "/-/ready") as server:
            yield server


# ---- Prometheus's HTTP API ----


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


def _query_once(server: Server, expr: str) -> list[Sample]:
    url = server.url("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    status, body = http_get(url)
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise AssertionError(f"query {expr!r} failed ({status}): {body}")
    return [Sample(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]


def query(
    server: Server,
    expr: str,
    until: Callable[[list[Sample]], bool] = bool,
    timeout: float = QUERY_TIMEOUT,
) -> list[Sample]:
    """The instant query ``expr``'s samples once ``until(samples)`` holds (default: any
    sample at all), asked again every 0.2 s; AssertionError with the last answer when
    the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        samples = _query_once(server, expr)
        if until(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s, {expr!r} is still {samples}")
        time.sleep(0.2)


# ---- the text exposition format ----

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')
Series = tuple[str, frozenset[tuple[str, str]]]


def _labels(text: str, line: str) -> frozenset[tuple[str, str]]:
    pairs = []
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if match is None:
            raise ValueError(f"bad labels in {line!r}")
        pairs.append((match[1], match[2]))
        pos = match.end()
    return frozenset(pairs)


def parse_exposition(text: str) -> dict[Series, float]:
    """Every sample of a text exposition as ``{(name, frozenset(labels)): value}``;
    ValueError for a line that is neither a comment nor a whole sample, or for text
    that does not end with a newline (a cut file)."""
    if not text.endswith("\n"):
        raise ValueError(f"does not end with a newline: {text[-80:]!r}")
    found: dict[Series, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"not a sample: {line!r}")
        found[(match[1], _labels(match[2] or "", line))] = float(match[3])
    return found


def declared_families(text: str) -> set[str]:
    """The families a text exposition declares (``# TYPE NAME KIND``), those without a
    sample included."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on ``text``: status 0 and no output when it is well
    formed and follows the naming conventions."""
    return subprocess.run(
        [binary(PROMTOOL), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=QUERY_TIMEOUT,
        check=False,
    )
