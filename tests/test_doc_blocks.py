"""Every code block of the README and the manual runs, and shows what it says.

- ``python``: each page's blocks run in order in one namespace; the README's API tour
  also runs fed line by line to ``code.InteractiveConsole``, as pasted into ``python3``,
  each trailing comment compared with what the prompt printed.
- ``console``: each page's ``$ command`` lines run in order in one bash (so ``$$`` is
  a shell the test started); the lines after a command are its output, with every
  number standing for any number, runs of spaces for any run, and a ``...`` line for
  any lines.
- ``sh``: synopses with placeholder pids, not run: every ``kcmp-rs`` command in them
  must parse with the real parser, every ``make`` target exist.
- ``json`` must parse; ``text`` is output captured elsewhere, shown as is;
  ``{eval-rst}`` and ``{toctree}`` are the manual's directives, run by Sphinx in
  ``make docs``.
"""

from __future__ import annotations

import ast
import code
import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from kcmp_rs.cli._main import build_parser

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w{}-]*)[^\n]*\n(.*?)^```", re.S | re.M)
KINDS = {"python", "console", "sh", "json", "text", "{eval-rst}", "{toctree}", "{literalinclude}"}


def blocks(page: Path, kind: str | None = None) -> list[tuple[str, str]]:
    found = FENCE.findall(page.read_text(encoding="utf-8"))
    return [(k, body) for k, body in found if kind is None or k == kind]


def ids(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=ids)
def test_every_block_says_its_kind(page: Path) -> None:
    kinds = {kind for kind, _ in blocks(page)}
    assert kinds <= KINDS, f"{ids(page)}: blocks of unknown kind {kinds - KINDS}"


def test_the_readme_and_manual_have_examples_that_run() -> None:
    assert blocks(README, "python") and blocks(README, "console")
    assert sum(len(blocks(p, "python")) for p in PAGES) >= 4


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=ids)
def test_python_blocks_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__doc_block__"}
    for _, body in blocks(page, "python"):
        exec(compile(body, str(page), "exec"), namespace)


# ---- the tour at the prompt ----


class Prompt(code.InteractiveConsole):
    """The interactive prompt, its error output kept instead of written."""

    def __init__(self) -> None:
        super().__init__({"__name__": "__console__"})
        self.errors: list[str] = []

    def write(self, data: str) -> None:
        self.errors.append(data)


def expected_result(line: str) -> str | None:
    """The trailing comment of a top-level expression statement (its result), else None."""
    if not line or line[0].isspace():
        return None
    tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    comments = [t for t in tokens if t.type == tokenize.COMMENT]
    if not comments:
        return None
    statement = line[: comments[0].start[1]]
    try:
        body = ast.parse(statement).body
    except SyntaxError:
        return None
    if len(body) == 1 and isinstance(body[0], ast.Expr):
        return comments[0].string[1:].strip()
    return None


def test_api_tour_runs_at_the_prompt() -> None:
    [(_, tour), *_] = blocks(README, "python")
    prompt = Prompt()
    checked, finished = 0, False
    try:
        for number, line in enumerate(tour.splitlines(), 1):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                prompt.push(line)
            assert not prompt.errors, f"README tour line {number}: {''.join(prompt.errors)}"
            result = expected_result(line)
            shown = printed.getvalue().rstrip("\n")
            if result is None:
                assert not shown, f"tour line {number} prints {shown!r} with no comment saying so"
                continue
            wanted = eval(result, prompt.locals)
            assert shown == repr(wanted) or _same_but_order(shown, wanted), (
                f"tour line {number}: {line!r} printed {shown!r}"
            )
            checked += 1
        finished = True
    finally:
        _reap(prompt.locals.get("child"))
        if not finished:
            _close_left_open(prompt.locals)
    assert checked >= 15, "the tour's results are no longer written as comments"


def _same_but_order(shown: str, wanted: object) -> bool:
    """Whether a printed literal equals the comment's value but for the order of its
    groups and members: both come in (pid, fd) order, and the comments are written as
    if the child's pid were the larger, which pid wraparound can make untrue."""
    try:
        value = ast.literal_eval(shown)
    except (ValueError, SyntaxError):
        return False
    return _unordered(value) == _unordered(wanted)


def _unordered(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return sorted((_unordered(v) for v in value), key=repr)
    return value


def _close_left_open(names: dict[str, object]) -> None:
    """Closes the fds of a tour that stopped before closing them itself, so the tests
    after it never inherit a stray pipe."""
    for name in ("r", "w", "d", "again"):
        fd = names.get(name)
        if isinstance(fd, int):
            with contextlib.suppress(OSError):
                os.close(fd)


def _reap(child: object) -> None:
    """Ends the tour's child if a failure left it waiting (never a pid already reaped)."""
    if not isinstance(child, int) or child <= 0:
        return
    try:
        if os.waitpid(child, os.WNOHANG) == (0, 0):
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    except ChildProcessError:
        pass


# ---- console blocks ----


def console_steps(page: Path) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the page with the output lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    for _, body in blocks(page, "console"):
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, f"{ids(page)}: output before any command: {line!r}"
                steps[-1][1].append(line)
    return steps


def pattern(shown: list[str]) -> re.Pattern[str]:
    parts = []
    for line in shown:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        piece = re.escape(line.rstrip())
        piece = re.sub(r"\d+", r"\\d+", piece)
        piece = re.sub(r"(?:\\ )+", r" +", piece)
        parts.append(piece.replace(r"\.\.\.", ".*") + r" *\n")
    return re.compile("".join(parts))


MARK = "@@kcmp-doc-step@@"


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "console")], ids=ids)
def test_console_blocks_show_what_they_print(page: Path, tmp_path: Path) -> None:
    steps = console_steps(page)
    script = "".join(f"echo {MARK}\n{command} 2>&1\n" for command, _ in steps)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    # Its own session, so that whatever a block starts in the background ends with it.
    shell = subprocess.Popen(
        ["bash", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = shell.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    outputs = output.split(f"{MARK}\n")[1:]
    assert len(outputs) == len(steps), output
    for (command, shown), printed in zip(steps, outputs):
        assert pattern(shown).fullmatch(printed), f"$ {command}\n{printed}"


# ---- synopses and documents ----


def synopsis_commands(body: str) -> list[list[str]]:
    """The commands of a block, each cut at its first pipe, redirection or comment."""
    commands = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        cut = [i for i, w in enumerate(words) if w in {"|", "&&", ";"} or w[0] in "<>"]
        commands.append(words[: cut[0]] if cut else words)
    return [c for c in commands if c]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.M))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "sh")], ids=ids)
def test_synopses_parse(page: Path) -> None:
    parser = build_parser()
    targets = make_targets()
    for _, body in blocks(page, "sh"):
        for words in synopsis_commands(body):
            if words[0] == "kcmp-rs":
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    pytest.fail(f"{ids(page)}: {shlex.join(words)} does not parse")
            elif words[0] == "make":
                assert {w for w in words[1:] if "=" not in w} <= targets, words


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "json")], ids=ids)
def test_json_blocks_parse(page: Path) -> None:
    for _, body in blocks(page, "json"):
        json.loads(body)


# ---- the page written from the parser, and the shape of the docs ----


def test_the_command_reference_is_the_parsers() -> None:
    from kcmp_rs.cli._reference import render

    page = ROOT / "docs" / "cli-reference.md"
    assert page.read_text(encoding="utf-8") == render(), "run `make cli-reference`"


def test_the_reference_lists_every_flag_of_every_subcommand() -> None:
    from kcmp_rs.cli._reference import render

    page = render()
    for flag in ["--allow-pidfd-getfd", "--across", "--inside", "--allow", "--example", "-J"]:
        assert f"`{flag}`" in page
    names = [
        "demo",
        "fds",
        "share",
        "holders",
        "epoll",
        "who",
        "peers",
        "scan",
        "escapes",
        "metrics",
    ]
    for name in names:
        assert f"\n## {name}\n" in page


def test_the_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


FIGURE = re.compile(r"\b\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?(?:x| ms| us| s| MB)\b")


def test_each_figure_is_stated_once() -> None:
    """A measured figure lives in docs/performance.md; no other page repeats it."""
    figures = set(FIGURE.findall((ROOT / "docs" / "performance.md").read_text()))
    assert len(figures) > 20
    for page in PAGES:
        if page.name != "performance.md":
            repeated = figures & set(FIGURE.findall(page.read_text(encoding="utf-8")))
            assert not repeated, f"{ids(page)} repeats {sorted(repeated)}"
