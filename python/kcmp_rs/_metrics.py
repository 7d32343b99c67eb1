"""``metrics()``: the fleet view. One collection of a host's processes as Prometheus
metric families (``kcmp-rs metrics``): what the processes hold and share, where
descriptions cross a namespace or cgroup boundary, the escape audit's findings,
epoll registrations left behind, pipes and FIFOs with one side gone, and what the
collection itself cost.

Two native passes decide everything (``_native.census``: the scan, every boundary
kind, the channels and epoll sets; ``_native.escapes``: the escape audit); this
module only names, labels and formats their counts, in the text exposition format
Prometheus and node_exporter's textfile collector read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import SupportsIndex

from kcmp_rs import _native
from kcmp_rs._escapes import SEVERITIES, Escapes, escapes
from kcmp_rs._proc import decoded, list_pids
from kcmp_rs._results import EXITED, NO_SUCH_PROCESS, OWNER_EXITED, PERMISSION_DENIED, ZOMBIE
from kcmp_rs._scan import _check_flag, _checked_pids

__all__ = ["Family", "Metrics", "Sample", "metrics"]

#: Every metric's name starts with this.
PREFIX = "kcmp_rs_"

#: The label values of ``processes_skipped``: the skip reasons without their messages,
#: so the label set stays bounded ("error: <message>" counts as "error").
SKIP_REASONS = (NO_SUCH_PROCESS, EXITED, ZOMBIE, PERMISSION_DENIED, OWNER_EXITED, "error")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One series of a family: its labels (name, value) and value."""

    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family: ``name`` (with the ``kcmp_rs_`` prefix), ``help`` and its
    samples. Every family is a gauge: each collection counts afresh."""

    name: str
    help: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Metrics:
    """One collection: its families, in a fixed order, and whether it is complete
    (every process read, every fd, boundary value and epoll set decided, the escape
    audit complete: ``kcmp_rs_collection_complete``)."""

    families: tuple[Family, ...]
    complete: bool

    def family(self, name: str) -> Family:
        """The family ``name`` (with or without the prefix); KeyError if there is none."""
        full = name if name.startswith(PREFIX) else PREFIX + name
        for f in self.families:
            if f.name == full:
                return f
        raise KeyError(name)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of family ``name`` whose labels include ``labels``
        (0 when none does): ``m.value("shared_descriptions", type="FIFO")``."""
        wanted = set(labels.items())
        return sum(s.value for s in self.family(name).samples if wanted <= set(s.labels))

    def exposition(self) -> str:
        """The text exposition format (version 0.0.4): per family ``# HELP`` and
        ``# TYPE`` lines, then its samples; label values escaped as the format says."""
        return "".join(_family_text(f) for f in self.families)


def metrics(pids: Iterable[SupportsIndex] | None = None, *, per_process: bool = False) -> Metrics:
    """One collection over ``pids`` (None: every process in /proc), as Prometheus
    metric families (``kcmp-rs metrics``; the table of families is in the manual's
    metrics page).

    ``per_process``: also one series per process (``process_open_fds`` and
    ``process_shared_fds``, labelled by pid and command): the label set then grows with
    the processes, so it is off by default.

    Returns a ``Metrics``: its families in a fixed order, whether the collection is
    complete, ``value()`` and ``exposition()``.

    Raises TypeError or ValueError for a bad argument (as ``scan()``), never for a
    process it cannot read: that one is counted in ``processes_skipped``.
    """
    wanted = list_pids() if pids is None else _checked_pids(pids)
    _check_flag(per_process, "per_process")
    start = time.monotonic()
    census = _native.census(wanted, per_process)
    scanned = time.monotonic()
    audit = escapes(wanted)
    done = time.monotonic()
    durations = {"census": scanned - start, "escapes": done - scanned, "total": done - start}
    return _build(census, audit, durations, time.time())


# ---- families from the two passes ----


def _build(
    census: _native.CensusReport,
    audit: Escapes,
    durations: dict[str, float],
    now: float,
) -> Metrics:
    complete = _complete(census, audit)
    families = [
        _gauge(
            "processes_scanned",
            "Processes whose fds were read (sharers of a read fd table included).",
            [((), census.processes_read)],
        ),
        _gauge(
            "processes_skipped",
            "Processes that could not be read, by reason.",
            _by_reason(census.skipped),
        ),
        _gauge(
            "open_fds",
            "Open fds of the processes read, by container (from the cgroup; empty for "
            "none) and file type.",
            [((("runtime", r), ("container", c), ("type", t)), n) for r, c, t, n in census.fds],
        ),
        _gauge(
            "shared_descriptions",
            "Open file descriptions held by two or more processes, by file type.",
            [((("type", t),), n) for t, n in census.shared],
        ),
        _gauge(
            "boundary_crossings",
            "Open file descriptions whose holders are in two or more namespaces (or "
            "cgroups) of a kind.",
            [((("kind", k),), n) for k, n in census.crossings],
        ),
        _gauge(
            "boundary_crossings_undecided",
            "Open file descriptions held by two or more processes with a holder whose "
            "namespace (or cgroup) of a kind could not be read.",
            [((("kind", k),), n) for k, n in census.crossings_undecided],
        ),
        _gauge(
            "escapes",
            "Escape audit findings (fds, cwds, roots outside the process's mount "
            "namespace or root), by container and severity.",
            _escape_samples(audit),
        ),
        _gauge(
            "escapes_found",
            "Escape audit findings of severity high or medium, over every container.",
            [((), audit.found)],
        ),
        _gauge(
            "epoll_registrations",
            "Registrations of the epoll sets read, by status: open, closed (the fd "
            "number is closed) or reused (it names another file now).",
            [((("status", s),), n) for s, n in census.epoll],
        ),
        _gauge(
            "unpaired_channels",
            "Pipes and FIFOs whose descriptions among the processes read are all on one "
            "side: no reader or no writer left.",
            [((("kind", k), ("missing", m)), n) for k, m, n in census.unpaired],
        ),
        _gauge(
            "undecided_fds",
            "Fds no exact method could place in a description (kcmp blocked).",
            [((), census.undecided)],
        ),
        _gauge(
            "collection_duration_seconds",
            "Wall time of the last collection, by phase (census, escapes, total).",
            [((("phase", p),), round(s, 6)) for p, s in durations.items()],
        ),
        _gauge(
            "collection_syscalls",
            "System calls of the last collection's census that are counted, by call.",
            [((("call", c),), n) for c, n in census.syscalls],
        ),
        _gauge(
            "collection_complete",
            "1 when every process was read and everything decided, else 0.",
            [((), int(complete))],
        ),
        _gauge(
            "last_collection_timestamp_seconds",
            "When the last collection ended, in seconds since the epoch.",
            [((), round(now, 3))],
        ),
    ]
    if census.per_process is not None:
        families.extend(_per_process(census.per_process))
    return Metrics(tuple(families), complete)


def _complete(census: _native.CensusReport, audit: Escapes) -> bool:
    return (
        not census.skipped
        and not census.undecided
        and not any(n for _, n in census.crossings_undecided)
        and not census.epoll_unread
        and audit.complete
    )


def _by_reason(skipped: list[tuple[int, str]]) -> list[tuple[Labels, int]]:
    counts = dict.fromkeys(SKIP_REASONS, 0)
    for _, reason in skipped:
        key = reason if reason in counts else "error"
        counts[key] += 1
    return [((("reason", r),), n) for r, n in counts.items()]


def _escape_samples(audit: Escapes) -> list[tuple[Labels, int]]:
    counts: dict[tuple[str, str, str], int] = {}
    for f in audit.findings:
        where = ("", "") if f.container is None else (f.container.runtime, f.container.id)
        key = (*where, f.severity)
        counts[key] = counts.get(key, 0) + 1
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return [
        ((("runtime", r), ("container", c), ("severity", s)), n)
        for (r, c, s), n in sorted(counts.items(), key=lambda kv: (kv[0][:2], order[kv[0][2]]))
    ]


def _per_process(rows: list[tuple[int, bytes | None, int, int]]) -> list[Family]:
    labels = [
        ((("pid", str(p)), ("command", decoded(c))), fds, shared) for p, c, fds, shared in rows
    ]
    return [
        _gauge(
            "process_open_fds",
            "Open fds of each process read (--per-process).",
            [(lab, fds) for lab, fds, _ in labels],
        ),
        _gauge(
            "process_shared_fds",
            "Fds of each process read on a description held by two or more processes "
            "(--per-process).",
            [(lab, shared) for lab, _, shared in labels],
        ),
    ]


def _gauge(name: str, text: str, samples: Iterable[tuple[Labels, float]]) -> Family:
    return Family(PREFIX + name, text, tuple(Sample(lab, v) for lab, v in samples))


# ---- the text exposition format ----


def _family_text(f: Family) -> str:
    head = f"# HELP {f.name} {_escape_help(f.help)}\n# TYPE {f.name} gauge\n"
    return head + "".join(_sample_lines(f))


def _sample_lines(f: Family) -> Iterator[str]:
    for s in f.samples:
        if s.labels:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels)
            yield f"{f.name}{{{inner}}} {_number(s.value)}\n"
        else:
            yield f"{f.name} {_number(s.value)}\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    """A label value as the format quotes it, valid UTF-8 whatever the name's bytes (a
    byte that is not UTF-8 becomes U+FFFD, as JSON's text fields give it)."""
    exact = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return exact.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(value)
