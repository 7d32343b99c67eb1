"""The sharing graph (``kcmp-rs scan/holders/share --dot``, ``kcmp_rs.cli._render``): the DOT
text pinned on hand-made results, names that cannot break out of their strings, and
graphs of processes the tests start rendered by Graphviz's ``dot -Tsvg``, whose SVG
must show every holder, every target and exactly the nodes and edges expected.

The rendering tests skip only where ``dot`` is missing (``make setup`` installs it as
root on Debian, through scripts/setup-system.sh)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import kcmp_rs
import pytest
from _checks import needs_dot, needs_kcmp
from _family import HOSTILE_NAME, Family, build_family
from _scan_helpers import run_cli
from hypothesis import given
from hypothesis import strategies as st
from kcmp_rs import Description, Member, Scan, shared_files
from kcmp_rs._results import Holders, SharedFiles
from kcmp_rs.cli._render import escape, holders_dot, quote, scan_dot, shared_files_dot

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

ROOT = Path(__file__).resolve().parent.parent
DOT = shutil.which("dot")
SVG = "{http://www.w3.org/2000/svg}"
NO_KCMP = {"KCMP_RS_NO_KCMP": "1"}

#: A DOT double-quoted string: no quote or newline inside but escaped ones.
QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"')


# ---- quoting ----


@pytest.mark.parametrize(
    ("name", "dot"),
    [
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("a\\b", r'"a\\\\b"'),  # escape() shows a\\b; DOT needs each backslash doubled
        ("line\nbreak", r'"line\\nbreak"'),  # shown as the two characters \n, no break
        ("\x1b[31mred", r'"\\x1b[31mred"'),
        ("tab\there\r", r'"tab\\there\\r"'),
        ("<b>x</b> {a|b} ]", '"<b>x</b> {a|b} ]"'),
        ('x" -> p1 [color="red', r'"x\" -> p1 [color=\"red"'),
        ("&lt;", '"&amp;lt;"'),  # Graphviz would show an entity as the character
        ("\udcff", r'"\\xff"'),  # a byte that is not UTF-8
        ("\u202e", r'"\\u202e"'),  # a bidi override, invisible otherwise
    ],
)
def test_quote_makes_every_name_literal(name: str, dot: str) -> None:
    assert quote(name) == dot


def _unquote(dot: str) -> str:
    """What Graphviz shows for a DOT string ``quote`` made."""
    inner = dot[1:-1]
    return re.sub(r"\\(.)", r"\1", inner).replace("&amp;", "&")


@given(st.text())
def test_quote_is_one_dot_string_showing_the_escaped_name(name: str) -> None:
    dot = quote(name)
    assert QUOTED.fullmatch(dot), dot
    assert dot.isprintable()
    assert _unquote(dot) == escape(name)


# ---- the DOT text ----


def scan_of(*descriptions: Description) -> Scan:
    fds = sum(len(d.members) for d in descriptions)
    pids = {m.pid for d in descriptions for m in d.members}
    return Scan(descriptions, (), processes_read=len(pids), fds_classified=fds)


PIPE = Description(
    "pipe:[7]", "r", (Member(30, 0, "cat"), Member(10, 5, "sh"), Member(20, 3, "sh")), "FIFO"
)
FILE = Description(
    "/tmp/a b", "rw", (Member(20, 4, "sh"), Member(10, 4, "sh"), Member(10, 3, "sh")), "REG"
)

EXPECTED = """\
digraph sharing {
  graph [rankdir=LR, fontname="Helvetica", fontsize=11, labelloc=t];
  node [fontname="Helvetica", fontsize=10, style=filled, fillcolor="#e3ecf7"];
  edge [fontname="Helvetica", fontsize=9];
  label="3 processes read, 6 fds classified, 2 descriptions shared, 0 processes skipped";
  p10 [label="10\\nsh"];
  p20 [label="20\\nsh"];
  p30 [label="30\\ncat"];
  d0 [shape=note, fontsize=9, fillcolor="#fdf6dc", label="REG rw\\n/tmp/a b"];
  d0 -> p10 [label="3,4"];
  d0 -> p20 [label="4"];
  d1 [shape=note, fontsize=9, fillcolor="#fdf6dc", label="FIFO r\\npipe:[7]"];
  d1 -> p10 [label="5"];
  d1 -> p20 [label="3"];
  d1 -> p30 [label="0"];
}
"""


def test_scan_dot_is_pinned() -> None:
    # Processes by pid, descriptions by their smallest (pid, fd), one edge per process
    # with all its fds on the description.
    assert scan_dot(scan_of(PIPE, FILE)) == EXPECTED


def test_scan_dot_does_not_depend_on_the_order_of_its_input() -> None:
    outputs = {
        scan_dot(scan_of(*(Description(d.target, d.mode, members, d.type) for d, members in p)))
        for order in itertools.permutations([PIPE, FILE])
        for p in [[(d, tuple(reversed(d.members))) for d in order], [(d, d.members) for d in order]]
    }
    assert outputs == {EXPECTED}


HOSTILE = [
    'x"];\np1 -> p2 [color="red',
    'a\\\\"b\\',
    "}\n}\ndigraph evil {",
    "<<b>html</b>>",
    "\x1b[31m\x00\x7f\r\t",
    "-> -- [label=x]",
    "&quot;",
]


def _skeleton(dot: str) -> str:
    """The DOT with every quoted string emptied: its structure, names left out."""
    return QUOTED.sub('""', dot)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_leave_the_structure_unchanged(name: str) -> None:
    hostile = scan_of(
        Description(name, "rw", (Member(10, 3, name), Member(20, 3, name)), name),
        Description("pipe:[1]", "r", (Member(10, 4, name), Member(30, 4, name)), "FIFO"),
    )
    plain = scan_of(
        Description("t", "rw", (Member(10, 3, "c"), Member(20, 3, "c")), "T"),
        Description("pipe:[1]", "r", (Member(10, 4, "c"), Member(30, 4, "c")), "FIFO"),
    )
    dot = scan_dot(hostile)
    assert _skeleton(dot) == _skeleton(scan_dot(plain))
    assert all(line.isprintable() for line in dot.splitlines())


def bounded(member: Member, boundary: object) -> Member:
    """``member`` carrying a boundary value, as the boundary audit's members do."""
    object.__setattr__(member, "boundary", boundary)
    return member


def test_processes_are_clustered_by_boundary_value() -> None:
    members = (
        bounded(Member(10, 3, "host"), "net:[1]"),
        bounded(Member(20, 3, "ctr"), 'net:[2] "x"'),
        bounded(Member(30, 3, "ctr"), 'net:[2] "x"'),
        Member(40, 3, "unknown"),
    )
    dot = scan_dot(scan_of(Description("socket:[5]", "rw", members, "SOCK")))
    body = dot.split('processes skipped";\n')[1]
    assert body.startswith(
        "  subgraph cluster_0 {\n"
        '    label="net:[1]";\n'
        '    p10 [label="10\\nhost"];\n'
        "  }\n"
        "  subgraph cluster_1 {\n"
        '    label="net:[2] \\"x\\"";\n'
        '    p20 [label="20\\nctr"];\n'
        '    p30 [label="30\\nctr"];\n'
        "  }\n"
        '  p40 [label="40\\nunknown"];\n'
        "  d0 "
    )


def test_no_boundary_values_no_clusters() -> None:
    assert "subgraph" not in scan_dot(scan_of(PIPE, FILE))


def _body(dot: str) -> str:
    """The DOT after its four lines of defaults and its title."""
    return dot.split("\n", 5)[5]


NOTE = 'shape=note, fontsize=9, fillcolor="#fdf6dc"'


def test_holders_dot_is_one_description_and_its_holders() -> None:
    dot = holders_dot(Holders(10, 5, PIPE, (), processes_read=3, fds_compared=9))
    assert dot.split("\n")[4] == '  label="holders of fd 5 of process 10";'
    assert _body(dot) == (
        '  p10 [label="10\\nsh"];\n'
        '  p20 [label="20\\nsh"];\n'
        '  p30 [label="30\\ncat"];\n'
        f'  d0 [{NOTE}, label="FIFO r\\npipe:[7]"];\n'
        '  d0 -> p10 [label="5"];\n'
        '  d0 -> p20 [label="3"];\n'
        '  d0 -> p30 [label="0"];\n'
        "}\n"
    )


def test_shared_files_dot_names_both_processes_and_each_description() -> None:
    found = SharedFiles(20, 10, shared=(((4,), (3, 4)), ((3,), (5,))), reopened=(((0,), (0,)),))
    asked: list[tuple[int, int]] = []

    def describe(pid: int, fd: int) -> tuple[str, str, str]:
        asked.append((pid, fd))
        return ("REG", "rw", "/tmp/a b") if (pid, fd) == (10, 3) else ("FIFO", "r", "pipe:[7]")

    dot = shared_files_dot(found, {10: "sh", 20: "sh"}.__getitem__, describe)
    assert dot.split("\n")[4] == '  label="open file descriptions shared by 20 and 10";'
    assert _body(dot) == (
        '  p10 [label="10\\nsh"];\n'
        '  p20 [label="20\\nsh"];\n'
        f'  d0 [{NOTE}, label="REG rw\\n/tmp/a b"];\n'
        '  d0 -> p10 [label="3,4"];\n'
        '  d0 -> p20 [label="4"];\n'
        f'  d1 [{NOTE}, label="FIFO r\\npipe:[7]"];\n'
        '  d1 -> p10 [label="5"];\n'
        '  d1 -> p20 [label="3"];\n'
        "}\n"
    )
    # One fd asked per shared description; the reopened files are not drawn.
    assert sorted(asked) == [(10, 3), (10, 5)]


def test_shared_files_dot_of_a_process_with_itself_draws_each_fd_once() -> None:
    found = SharedFiles(10, 10, shared=(((0, 1), (0, 1)),), reopened=(), same_fd_table=True)
    dot = shared_files_dot(found, lambda pid: "sh", lambda pid, fd: ("CHR", "rw", "/dev/null"))
    assert re.findall(r"d\d+ -> p\d+ .*", dot) == ['d0 -> p10 [label="0,1"];']


# ---- rendered by Graphviz ----


@dataclass(frozen=True)
class Rendered:
    """What ``dot -Tsvg`` drew: each node's lines of text by its DOT id, each edge's
    label by (tail, head), each cluster's label lines."""

    nodes: dict[str, list[str]]
    edges: dict[tuple[str, str], str]
    clusters: list[list[str]]


def _texts(g: ET.Element) -> list[str]:
    return [t.text or "" for t in g.iter(f"{SVG}text")]


def render(dot: str) -> Rendered:
    assert DOT is not None
    done = subprocess.run([DOT, "-Tsvg"], input=dot.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Not even a warning: every string was read as written.
    assert done.stderr == b"", done.stderr
    return parse_svg(done.stdout)


def parse_svg(svg: bytes) -> Rendered:
    root = ET.fromstring(svg)
    nodes: dict[str, list[str]] = {}
    edges: dict[tuple[str, str], str] = {}
    clusters = []
    for g in root.iter(f"{SVG}g"):
        title = g.findtext(f"{SVG}title") or ""
        kind = g.get("class")
        if kind == "node":
            assert title not in nodes, title
            nodes[title] = _texts(g)
        elif kind == "edge":
            tail, head = title.split("->")
            assert (tail, head) not in edges, title
            [edges[tail, head]] = _texts(g)
        elif kind == "cluster":
            clusters.append(_texts(g))
    return Rendered(nodes, edges, clusters)


def expected_graph(
    descriptions: Sequence[Description],
) -> tuple[dict[str, list[str]], list[tuple[tuple[str, ...], frozenset[tuple[str, str]]]]]:
    """The process nodes (id: lines) and, per description, its lines and its edges
    (head, label), every name shown as the tables show it."""
    processes = {
        f"p{m.pid}": [str(m.pid), escape(m.command)] for d in descriptions for m in d.members
    }
    drawn = []
    for d in descriptions:
        fds: dict[int, list[int]] = {}
        for m in d.members:
            fds.setdefault(m.pid, []).append(m.fd)
        edges = frozenset((f"p{pid}", ",".join(map(str, sorted(f)))) for pid, f in fds.items())
        drawn.append(((f"{escape(d.type)} {d.mode}", escape(d.target)), edges))
    return processes, sorted(drawn)


def check_drawing(rendered: Rendered, descriptions: Sequence[Description]) -> None:
    """Exactly one node per process and per description, each holder with its pid and
    command, each description with its type, mode and target, one edge per holder
    labelled with its fds."""
    processes, drawn = expected_graph(descriptions)
    assert len(rendered.nodes) == len(processes) + len(descriptions)
    assert {k: v for k, v in rendered.nodes.items() if k.startswith("p")} == processes
    got = sorted(
        (
            tuple(lines),
            frozenset((head, label) for (tail, head), label in rendered.edges.items() if tail == d),
        )
        for d, lines in rendered.nodes.items()
        if d.startswith("d")
    )
    assert got == drawn
    assert len(rendered.edges) == sum(len(edges) for _, edges in drawn)


@pytest.fixture
def family() -> Iterator[Family]:
    with build_family(4, 12) as fam:
        yield fam


@needs_dot
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_render_as_written(name: str) -> None:
    descriptions = (
        Description(name, "rw", (Member(10, 3, name), Member(20, 3, name)), name),
        Description("pipe:[1]", "r", (Member(10, 4, name), Member(30, 4, name)), "FIFO"),
    )
    members = [bounded(m, name) for m in descriptions[0].members]
    clustered = (Description(name, "rw", tuple(members), name), descriptions[1])
    check_drawing(render(scan_dot(scan_of(*descriptions))), descriptions)
    rendered = render(scan_dot(scan_of(*clustered)))
    check_drawing(rendered, clustered)
    assert rendered.clusters == [[escape(name)]]


@needs_kcmp
@needs_dot
def test_a_family_renders_with_every_holder_and_target(family: Family) -> None:
    result = kcmp_rs.scan(family.pids)
    assert [tuple((m.pid, m.fd) for m in d.members) for d in result.descriptions] == family.groups
    rendered = render(scan_dot(result))
    check_drawing(rendered, result.descriptions)
    for ref in family.labels:
        raw = family.target(ref)
        if raw is not None and any(ref in g for g in family.groups):
            assert [escape(os.fsdecode(raw))] in [lines[1:] for lines in rendered.nodes.values()]
    assert {f"p{pid}" for pid in family.pids} <= set(rendered.nodes)


@needs_kcmp
@needs_dot
def test_hostile_file_and_command_names_render_without_breaking() -> None:
    command = b'ev"il\\]->\n\x1b{<'
    with build_family(2, 8, hostile_names=True, command=command) as fam:
        result = kcmp_rs.scan(fam.pids)
        pair = next(r for r, label in fam.labels.items() if label == "pair:0")
        raw = fam.target(pair)
    assert raw is not None and HOSTILE_NAME in raw
    rendered = render(scan_dot(result))
    check_drawing(rendered, result.descriptions)
    shown = escape(os.fsdecode(raw))
    assert "evil\\n\\x1b[31mred\\xff-pair-0" in shown
    assert any(lines[1:] == [shown] for lines in rendered.nodes.values())
    for pid in fam.pids:
        assert rendered.nodes[f"p{pid}"] == [str(pid), 'ev"il\\\\]->\\n\\x1b{<']


@needs_kcmp
def test_cli_scan_dot_is_the_scans_graph(family: Family) -> None:
    pids = ",".join(map(str, family.pids))
    done = run_cli("scan", "-p", pids, "--dot")
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert done.stdout.decode() == scan_dot(kcmp_rs.scan(family.pids))


@needs_kcmp
@needs_dot
def test_cli_scan_example_dot_renders(tmp_path: Path) -> None:
    done = run_cli("scan", "--example", "--dot", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert text.startswith("digraph sharing {\n") and text.endswith("}\n")
    rendered = render(text)
    processes = [k for k in rendered.nodes if k.startswith("p")]
    descriptions = [k for k in rendered.nodes if k.startswith("d")]
    assert len(processes) == 4
    assert all(lines[1] == "kcmp-family" for k, lines in rendered.nodes.items() if k in processes)
    # 4 x /dev/null, 4 private files, the lifeline pipe, 2 x (pair, passed): 13.
    assert len(descriptions) == 13
    assert list(tmp_path.iterdir()) == []


@needs_kcmp
@needs_dot
def test_cli_holders_dot(family: Family) -> None:
    lifeline = sorted(r for r, label in family.labels.items() if label == "lifeline")
    pid, fd = lifeline[0]
    pids = ",".join(map(str, family.pids))
    done = run_cli("holders", str(pid), str(fd), "-p", pids, "--dot")
    assert done.returncode == 0, done.stderr
    assert 'label="holders of fd' in done.stdout.decode()
    rendered = render(done.stdout.decode())
    found = kcmp_rs.holders(pid, fd, family.pids)
    check_drawing(rendered, [found.description])
    assert sorted(rendered.edges) == [("d0", f"p{p}") for p, _ in lifeline]
    assert set(rendered.edges.values()) == {str(fd)}


@needs_kcmp
@needs_dot
def test_cli_share_dot(family: Family) -> None:
    pid1, pid2 = family.pids[:2]
    done = run_cli("share", str(pid1), str(pid2), "--dot")
    assert done.returncode == 0, done.stderr
    assert "RESOURCE" not in done.stdout.decode()
    rendered = render(done.stdout.decode())
    found = shared_files(pid1, pid2)
    assert len(found.shared) == 3  # the lifeline pipe, the pair's file, the passed file
    labels = {family.labels[pid1, a[0]] for a, _ in found.shared}
    assert {label.split(":")[0] for label in labels} == {"lifeline", "pair", "passed"}
    assert len(rendered.nodes) == 2 + 3
    assert {k: v for k, v in rendered.nodes.items() if k.startswith("p")} == {
        f"p{pid1}": [str(pid1), "kcmp-family"],
        f"p{pid2}": [str(pid2), "kcmp-family"],
    }
    drawn = sorted(
        sorted((head, label) for (tail, head), label in rendered.edges.items() if tail == d)
        for d in rendered.nodes
        if d.startswith("d")
    )
    assert drawn == sorted(
        sorted([(f"p{pid1}", ",".join(map(str, a))), (f"p{pid2}", ",".join(map(str, b)))])
        for a, b in found.shared
    )
    targets = {lines[1] for d, lines in rendered.nodes.items() if d.startswith("d")}
    for a, _ in found.shared:
        raw = family.target((pid1, a[0]))
        if raw is not None:
            assert os.fsdecode(raw) in targets


@needs_kcmp
def test_cli_share_dot_without_kcmp_is_incomplete(family: Family) -> None:
    pid1, pid2 = family.pids[:2]
    done = run_cli("share", str(pid1), str(pid2), "--dot", env=NO_KCMP)
    assert done.returncode == 4
    assert done.stdout.decode().startswith("digraph sharing {\n")
    assert re.fullmatch(
        r"kcmp-rs: incomplete answer: \d+ fds undecided: kcmp\(2\) is disabled by "
        r"configuration .*; without kcmp\(2\), another process's fds can be compared only "
        r"by copying them: try --allow-pidfd-getfd\n",
        done.stderr.decode(),
    )
    done = run_cli("share", str(pid1), str(pid2), "--dot", "--allow-pidfd-getfd", env=NO_KCMP)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert done.stdout == run_cli("share", str(pid1), str(pid2), "--dot").stdout


_NOT_WITH = "error: argument -J/--json: not allowed with argument --dot"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["scan", "--dot", "-J"], f"kcmp-rs scan: {_NOT_WITH}"),
        (
            ["scan", "-j", "--dot"],
            "kcmp-rs scan: error: argument --dot: not allowed with argument -j/--json-lines",
        ),
        (["scan", "--example", "--dot", "-J"], f"kcmp-rs scan: {_NOT_WITH}"),
        (["holders", "{me}", "0", "--dot", "-J"], f"kcmp-rs holders: {_NOT_WITH}"),
        (["share", "{me}", "{me}", "--dot", "-J"], f"kcmp-rs share: {_NOT_WITH}"),
        (["epoll", "{me}", "--dot"], "kcmp-rs epoll: error: unrecognized arguments: --dot"),
    ],
)
def test_dot_excludes_json_and_is_not_everywhere(args: list[str], error: str) -> None:
    done = run_cli(*(a.format(me=os.getpid()) for a in args))
    assert done.returncode == 2
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert lines[0].startswith("usage: kcmp-rs")
    assert lines[-1] == error


# ---- the manual's picture ----


def _normalized(rendered: Rendered) -> list[list[str]]:
    """Node and edge texts with what changes from run to run (pids, inode numbers, the
    temporary directory's name) made the same."""

    def norm(lines: list[str]) -> list[str]:
        return [re.sub(r"\d+", "N", re.sub(r"/\S*kcmp-family-\w+", "DIR", x)) for x in lines]

    edges = [[label] for label in rendered.edges.values()]
    return sorted(norm(lines) for lines in [*rendered.nodes.values(), *edges])


@needs_kcmp
@needs_dot
def test_the_manual_picture_is_the_rendered_example(tmp_path: Path) -> None:
    svg = ROOT / "docs" / "scan-example.svg"
    assert "](scan-example.svg)" in (ROOT / "docs" / "audits.md").read_text()
    done = run_cli("scan", "--example", "--dot", env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert _normalized(parse_svg(svg.read_bytes())) == _normalized(render(done.stdout.decode()))
