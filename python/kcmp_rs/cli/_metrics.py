"""``kcmp-rs metrics``: one collection (``kcmp_rs._metrics.metrics()``) in Prometheus's
text exposition format, printed, written for node_exporter's textfile collector
(``--textfile DIR``: ``DIR/kcmp_rs.prom``, replaced whole by a rename, never seen
partial) or served over HTTP (``--listen HOST:PORT``: ``/metrics``, one collection at
a time, at most one per ``--min-interval``; SIGTERM ends it cleanly).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.server
import math
import os
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Callable

from kcmp_rs._metrics import metrics
from kcmp_rs.cli._common import CommandError, command, given_pids, pids_flag
from kcmp_rs.cli._io import EXIT_INTERRUPTED, Parser, note, out

__all__ = ["TEXTFILE_NAME", "add_metrics", "write_textfile"]

#: The file ``--textfile DIR`` writes; node_exporter reads only names ending in .prom.
TEXTFILE_NAME = "kcmp_rs.prom"
#: What a response's body is, as Prometheus asks for the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: ``--min-interval``'s default: a scrape within it is answered from the last result.
DEFAULT_MIN_INTERVAL = 10.0


def add_metrics(sub: argparse._SubParsersAction[Parser]) -> None:
    """Registers ``metrics``."""
    parser = command(
        sub,
        "metrics",
        help="Prometheus metrics: fds, sharing, boundary crossings, escapes, lone pipe ends",
        description="One collection over the processes (all by default; -p narrows it) "
        "in Prometheus's text exposition format: processes read and skipped, open fds "
        "by container and type, descriptions held by two or more processes, boundary "
        "crossings by kind, escape audit findings by container and severity, epoll "
        "registrations closed or reused, pipes and FIFOs with no reader or no writer, "
        "and the collection's duration and system calls. Printed on stdout, written "
        "to DIR/kcmp_rs.prom for node_exporter's textfile collector (--textfile), or "
        "served on /metrics (--listen; SIGTERM or Ctrl-C stops it).",
        example="  kcmp-rs metrics -p 1234,1240\n"
        "  kcmp-rs metrics --textfile /var/lib/prometheus/node-exporter\n"
        "  kcmp-rs metrics --listen 127.0.0.1:9877",
    )
    pids_flag(parser, "collect only these processes (repeatable)")
    parser.add_argument(
        "--per-process",
        action="store_true",
        help="also one series per process (labels pid and command): the label set grows "
        "with the processes",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--textfile",
        metavar="DIR",
        help="write DIR/kcmp_rs.prom atomically (a temporary file in DIR, then a rename) "
        "instead of printing",
    )
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=_address,
        help="serve /metrics on HOST:PORT until SIGTERM (port 0: any free port; the "
        "address is said on stderr)",
    )
    parser.add_argument(
        "--min-interval",
        metavar="SECONDS",
        type=_interval,
        help="with --listen: the least time between two collections; a scrape sooner is "
        f"answered from the last one (default {DEFAULT_MIN_INTERVAL:g})",
    )
    parser.set_defaults(func=_cmd_metrics, parser=parser)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _cmd_metrics(args: argparse.Namespace) -> int:
    pids = given_pids(args)

    def collect() -> str:
        return metrics(pids, per_process=args.per_process).exposition()

    if args.listen is not None:
        interval = DEFAULT_MIN_INTERVAL if args.min_interval is None else args.min_interval
        return _serve(args.listen, collect, interval)
    if args.min_interval is not None:
        args.parser.error("--min-interval needs --listen HOST:PORT")
    if args.textfile is not None:
        _check_directory(args.textfile)
        write_textfile(args.textfile, collect())
        return 0
    out(collect())
    return 0


def _check_directory(path: str) -> None:
    """Fails before the collection if ``path`` is no directory we can reach."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as err:
        raise CommandError(f"textfile directory {path}: {err.strerror}") from None
    if not is_dir:
        raise CommandError(f"textfile directory {path}: not a directory")


def write_textfile(directory: str, text: str) -> None:
    """``text`` as ``directory/kcmp_rs.prom``, replaced whole: written to a temporary
    file in ``directory`` (a name node_exporter does not read), flushed to disk, then
    renamed over the old one. CommandError, with no file left behind, if it cannot be."""
    final = os.path.join(directory, TEXTFILE_NAME)
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{TEXTFILE_NAME}.")
    except OSError as err:
        raise CommandError(f"cannot write {final}: {err.strerror}") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # node_exporter may run as another user
            os.fsync(f.fileno())
        os.replace(temporary, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(err, OSError):
            raise CommandError(f"cannot write {final}: {err.strerror}") from None
        raise


# ---- --listen ----


class _Collections:
    """The last collection and when it ended: a scrape within ``min_interval`` of it
    is answered with it; one collection at a time, the others waiting for it."""

    def __init__(self, collect: Callable[[], str], min_interval: float) -> None:
        self._collect = collect
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last: tuple[float, str] | None = None

    def get(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self._min_interval:
                text = self._collect()
                self._last = (time.monotonic(), text)
            return self._last[1]


def _handler(collections: _Collections) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "kcmp-rs"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, "text/plain; charset=utf-8", "not found: try /metrics\n")
                return
            try:
                text = collections.get()
            except OSError as err:  # the collection failed: said, and the next one tried
                self._send(500, "text/plain; charset=utf-8", f"collection failed: {err}\n")
                return
            self._send(200, CONTENT_TYPE, text)

        def _send(self, status: int, kind: str, text: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a scrape every few seconds is no news."""

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    # A restart must not wait for the old socket's TIME_WAIT; two servers still
    # cannot share a port (no SO_REUSEPORT).
    allow_reuse_address = True


def _serve(address: tuple[str, int], collect: Callable[[], str], min_interval: float) -> int:
    handler = _handler(_Collections(collect, min_interval))
    host, port = address
    try:
        server = _server(host, port, handler)
    except OSError as err:
        reason = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror
        raise CommandError(f"cannot listen on {host}:{port}: {reason or err}") from None
    with server, _signals_blocked() as stop:
        bound = server.server_address
        note(f"serving metrics on http://{_shown(str(bound[0]))}:{bound[1]}/metrics")
        worker = threading.Thread(target=server.serve_forever, name="kcmp-rs metrics")
        worker.start()
        try:
            got = stop()
        finally:
            server.shutdown()  # waits for the request being answered, if one is
            worker.join()
    return EXIT_INTERRUPTED if got == signal.SIGINT else 0


class _Server6(_Server):
    address_family = socket.AF_INET6


def _server(host: str, port: int, handler: type[http.server.BaseHTTPRequestHandler]) -> _Server:
    kind = _Server6 if ":" in host else _Server  # an IPv6 address has colons
    return kind((host, port), handler)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _signals_blocked() -> Iterator[Callable[[], int]]:
    """SIGTERM and SIGINT blocked in this thread (and the threads it starts) while the
    server runs; the function given waits for one of them and says which."""
    wanted = {signal.SIGTERM, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield lambda: signal.sigwait(wanted)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        sys.stdout.flush()
