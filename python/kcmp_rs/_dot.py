"""The sharing graph: Graphviz DOT for ``kcmp-rs scan --dot``, ``holders --dot`` and
``share --dot``. Processes are nodes (pid and command), each open file description a
small note (type, mode, target) with an edge to each process holding it, labelled with
that process's fds on it (``0,1,2``). Render it with ``dot -Tsvg``.

Names are untrusted: a file may be called ``x" shape=box]; p1 -> p2 [label="`` or hold
a newline. Each name is escaped for display as the tables escape it
(``_table.escape``), then quoted for DOT (``quote``), and node ids are generated
(``p<pid>``, ``d<n>``), never taken from a name: no name can end a string, add an
attribute or draw an edge. Members with a ``boundary`` value (the boundary audit's)
are grouped in one cluster per value.

Only formatting, like ``_table``: pure functions of their arguments, the output sorted
so that one input always gives the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kcmp_rs._answers import Holders, SharedFiles
from kcmp_rs._results import Description, Member, Scan
from kcmp_rs._table import escape, summary

__all__ = ["holders_dot", "quote", "scan_dot", "shared_files_dot"]

_HEAD = (
    "digraph sharing {",
    '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=t];',
    '  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor="#e3ecf7"];',
    '  edge [fontname="Helvetica", fontsize=9];',
)


def _text(text: str) -> str:
    # After escape() only printable characters are left; DOT gives meaning to the
    # backslash (\n, \l, \N, ...) and the quote inside a quoted string, and Graphviz
    # reads "&name;" as an HTML entity: all three are made literal.
    shown = escape(text)
    return shown.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")


def quote(text: str) -> str:
    """``text`` as a DOT double-quoted string that Graphviz shows as ``_table.escape``
    shows it on a terminal: a newline as ``\\n``, ESC as ``\\x1b``, a quote and a
    backslash as themselves; ``<``, ``}``, ``]`` and ``->`` stay plain text inside the
    quotes."""
    return f'"{_text(text)}"'


def _lines(*lines: str) -> str:
    """A label of several lines: DOT's own ``\\n`` between the quoted texts."""
    return '"' + "\\n".join(_text(line) for line in lines) + '"'


def _order(d: Description) -> tuple[tuple[tuple[int, int], ...], str, str, str]:
    return tuple(sorted((m.pid, m.fd) for m in d.members)), d.type, d.target, d.mode


def _fds_by_pid(members: Iterable[Member]) -> dict[int, list[int]]:
    by_pid: dict[int, list[int]] = {}
    for m in sorted(members, key=lambda m: (m.pid, m.fd)):
        fds = by_pid.setdefault(m.pid, [])
        if m.fd not in fds:
            fds.append(m.fd)
    return by_pid


def _process_node(m: Member) -> str:
    return f"p{m.pid} [label={_lines(str(m.pid), m.command)}];"


def _process_lines(processes: dict[int, Member]) -> list[str]:
    """One node per process; with boundary values, one cluster per value (sorted by
    its text), and the processes without one outside any cluster."""
    clusters: dict[str, list[Member]] = {}
    loose: list[Member] = []
    for pid in sorted(processes):
        boundary = getattr(processes[pid], "boundary", None)
        if boundary is None:
            loose.append(processes[pid])
        else:
            clusters.setdefault(str(boundary), []).append(processes[pid])
    out = []
    for n, value in enumerate(sorted(clusters)):
        out += [f"  subgraph cluster_{n} {{", f"    label={quote(value)};"]
        out += [f"    {_process_node(m)}" for m in clusters[value]]
        out.append("  }")
    out += [f"  {_process_node(m)}" for m in loose]
    return out


def _graph(title: str, descriptions: Iterable[Description]) -> str:
    ordered = sorted(descriptions, key=_order)
    processes: dict[int, Member] = {}
    for d in ordered:
        for m in sorted(d.members, key=lambda m: (m.pid, m.fd)):
            processes.setdefault(m.pid, m)
    lines = [*_HEAD, f"  label={quote(title)};", *_process_lines(processes)]
    for n, d in enumerate(ordered):
        label = _lines(f"{d.type} {d.mode}", d.target)
        lines.append(f'  d{n} [shape=note, fontsize=9, fillcolor="#fdf6dc", label={label}];')
        for pid, fds in _fds_by_pid(d.members).items():
            lines.append(f"  d{n} -> p{pid} [label={quote(','.join(map(str, fds)))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def scan_dot(result: Scan) -> str:
    """The descriptions of a scan as a graph (those it reports: the shared ones, or all
    of them with ``include_unshared``), titled with the scan's summary line."""
    return _graph(summary(result), result.descriptions)


def holders_dot(found: Holders) -> str:
    """One description and every process holding it."""
    title = f"holders of fd {found.fd} of process {found.pid}"
    return _graph(title, [found.description])


def shared_files_dot(
    found: SharedFiles,
    command: Callable[[int], str],
    describe: Callable[[int, int], tuple[str, str, str]],
) -> str:
    """The descriptions two processes share. ``SharedFiles`` holds fd numbers only:
    ``command(pid)`` names a process, ``describe(pid, fd)`` gives ``(type, mode,
    target)`` of one fd's description."""
    commands = {pid: command(pid) for pid in sorted({found.pid1, found.pid2})}
    descriptions = []
    for fds1, fds2 in found.shared:
        refs = {(found.pid1, fd) for fd in fds1} | {(found.pid2, fd) for fd in fds2}
        members = tuple(Member(pid, fd, commands[pid]) for pid, fd in sorted(refs))
        if not members:  # every shared pair has fds on both sides; never drawn empty
            continue
        type_, mode, target = describe(members[0].pid, members[0].fd)
        descriptions.append(Description(target, mode, members, type_))
    title = f"open file descriptions shared by {found.pid1} and {found.pid2}"
    return _graph(title, descriptions)
