"""The Python package reads no /proc: the native room is the only reader (ARCHITECTURE.md).

Two checks. The sources hold no /proc path outside docstrings and prose, and no
directory listing or link reading at all. And every question, the fd-leak check and
each CLI command, run here against processes these tests start, make no file-system
call on a /proc path from a frame of the package (the os functions and ``open`` are
wrapped for the run; a forked example member inherits the wrappers and fails).

``baseline.py`` is exempt: it is the ctypes-and-/proc implementation a Python user
would write, which the benchmarks measure the native module against.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import os
import pathlib
import select
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import kcmp_rs
import pytest
from _helpers import spawned
from kcmp_rs import cli
from kcmp_rs._proc import list_pids

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

PACKAGE = pathlib.Path(kcmp_rs.__file__).resolve().parent
EXEMPT = {"baseline.py"}
SOURCES = sorted(p for p in PACKAGE.glob("**/*.py") if p.name not in EXEMPT)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def _proc_paths(path: pathlib.Path) -> list[str]:
    """Code in ``path`` that names a /proc path or lists directories, reads links."""
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if isinstance(text, str) and text.startswith("/proc"):
                hits.append(f"{path.name}:{node.lineno}: {text!r}")
        elif isinstance(node, ast.Attribute) and node.attr in ("listdir", "scandir", "readlink"):
            hits.append(f"{path.name}:{node.lineno}: os.{node.attr}")
    return hits


def test_the_sources_name_no_proc_path() -> None:
    assert len(SOURCES) >= 20 and PACKAGE / "cli" / "_main.py" in SOURCES
    hits = [hit for path in SOURCES for hit in _proc_paths(path)]
    assert hits == []


def test_the_source_check_finds_what_it_looks_for(tmp_path: pathlib.Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""Reads /proc/PID/fd, a docstring: allowed."""\n'
        "import os\n"
        'os.readlink(b"/proc/%d/fd/%d" % (1, 2))\n'
        'x = f"/proc/{1}/comm"\n'
    )
    assert sorted(_proc_paths(planted)) == [
        "planted.py:3: '/proc/%d/fd/%d'",
        "planted.py:3: os.readlink",
        "planted.py:4: '/proc/'",
    ]


WRAPPED = [
    (os, "open"),
    (os, "stat"),
    (os, "lstat"),
    (os, "listdir"),
    (os, "scandir"),
    (os, "readlink"),
    (os, "access"),
    (builtins, "open"),
    (io, "open"),
]


def _from_package() -> str | None:
    """The package frame (file:line) that made the current call, if one did."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        where = pathlib.Path(frame.f_code.co_filename)
        if where.parent == PACKAGE and where.name not in EXEMPT:
            return f"{where.name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@contextlib.contextmanager
def proc_reads_recorded() -> Iterator[list[str]]:
    """Records (and refuses with EACCES) each /proc access made from the package."""
    seen: list[str] = []

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, (str, bytes, os.PathLike)):
                text = os.fsdecode(os.fspath(path))
                where = _from_package() if text.startswith("/proc") else None
                if where is not None:
                    seen.append(f"{where}: {name}({text!r})")
                    raise PermissionError(13, "the package must not read /proc", text)
            return real(path, *args, **kwargs)

        return call

    saved = [(module, attr, getattr(module, attr)) for module, attr in WRAPPED]
    try:
        for module, attr, real in saved:
            setattr(module, attr, wrap(f"{module.__name__}.{attr}", real))
        yield seen
    finally:
        for module, attr, real in saved:
            setattr(module, attr, real)


def test_the_recorder_catches_a_read_from_the_package() -> None:
    planted = compile("import os\nos.listdir('/proc/self/fd')\n", str(PACKAGE / "_x.py"), "exec")
    with proc_reads_recorded() as seen, pytest.raises(PermissionError):
        exec(planted, {})
    assert seen == ["_x.py:2: os.listdir('/proc/self/fd')"]


def _watching(fd: int) -> Callable[[], int]:
    def setup() -> int:
        ep = select.epoll()
        ep.register(fd, select.EPOLLIN)
        epfd = os.dup(ep.fileno())  # the set lives on through the dup
        ep.close()
        return epfd

    return setup


def _cli(*argv: object) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return cli.main([str(a) for a in argv])


def test_every_question_and_command_reads_proc_natively() -> None:
    me = os.getpid()
    r, w = os.pipe()  # inherited by both children: one description each end
    with spawned(_watching(r)) as a, spawned(_watching(r)) as b:
        os.close(r)
        os.close(w)
        pids = [a.pid, b.pid]
        ep = a.data
        with proc_reads_recorded() as seen:
            for boundary in (None, "net", "cgroup"):
                result = kcmp_rs.scan(pids, include_unshared=True, boundary=boundary)
                assert result.processes_read == 2
            found = kcmp_rs.holders(a.pid, r, pids)
            assert {(m.pid, m.fd) for m in found.description.members} == {(a.pid, r), (b.pid, r)}
            assert found.description.type == "FIFO"
            assert kcmp_rs.shared_files(a.pid, b.pid).shared
            assert [t.tfd for t in kcmp_rs.epoll_targets(a.pid, ep, pids)] == [r]
            kcmp_rs.sharing(a.pid, b.pid)
            kcmp_rs.classify_fds(a.pid)
            assert kcmp_rs.escapes(pids).processes_read == 2
            assert kcmp_rs.metrics(pids, per_process=True).value("processes_scanned") == 2
            check = kcmp_rs.FdLeakCheck()
            check.start()
            with spawned() as child:  # started in the block, alive at its end
                leaked = os.open(os.devnull, os.O_RDONLY)
                leaks = check.stop()
            os.close(leaked)
            assert leaked in [fd.fd for fd in leaks.fds]  # with the helper's control pipe
            assert [c.pid for c in leaks.children] == [child.pid]
            p = ",".join(map(str, pids))
            assert _cli("fds", a.pid) == 0
            assert _cli("share", a.pid, b.pid) == 0
            assert _cli("share", a.pid, b.pid, "--dot") == 0
            assert _cli("epoll", a.pid) == 0
            assert _cli("holders", a.pid, r, "-p", p) == 0
            assert _cli("holders", a.pid, r, "-p", p, "-J") == 0
            assert _cli("scan", "-p", p, "-J") == 0
            assert _cli("scan", "-p", p) == 0
            assert _cli("scan", "-p", p, "--across", "net", "--inside", a.pid) == 0
            assert _cli("scan", "-p", p, "--across", "net", "--inside", "/") == 0
            assert _cli("scan", "--example") == 0
            assert _cli("scan", "-p", p, "--watch", "0.01", "--count", "2", "--all") == 0
            assert _cli("demo") == 0
            assert _cli("escapes", "-p", p) == 0
            assert _cli("escapes", "-p", p, "-j") == 0
            assert _cli("metrics", "-p", p) == 0
            assert me in list_pids()
        assert seen == []
