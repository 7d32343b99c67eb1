"""The man page and the bash, zsh and fish completions under wheel-data/ are what
scripts/gen_shell_files.py makes of today's parser, byte for byte, and they work: the
page renders and documents every subcommand and option; each shell parses its file;
bash and fish complete subcommands, options, choices and files.

These read the source tree (wheel-data/, scripts/, CHANGELOG.md): scripts/wheel-test.sh
leaves them out, as it does test_layout.py, and checks the installed copies instead.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from kcmp_rs.cli._main import build_parser

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "gen_shell_files.py"
COMMITTED = ROOT / "wheel-data" / "data"
MAN = "share/man/man1/kcmp-rs.1"
BASH = "share/bash-completion/completions/kcmp-rs"
ZSH = "share/zsh/site-functions/_kcmp-rs"
FISH = "share/fish/vendor_completions.d/kcmp-rs.fish"
FILES = {MAN, BASH, ZSH, FISH}
REGENERATE = "regenerate them: make shell-files (scripts/gen_shell_files.py), then commit"


def _listing(directory: pathlib.Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def _differences(committed: pathlib.Path, fresh: pathlib.Path) -> list[str]:
    """What differs between two generated trees: files on one side only, then a diff of
    each file whose bytes differ (its first lines)."""
    found: list[str] = []
    have, want = _listing(committed), _listing(fresh)
    found += [f"{name}: committed, no longer generated" for name in sorted(have - want)]
    found += [f"{name}: generated, not committed" for name in sorted(want - have)]
    for name in sorted(have & want):
        old, new = (committed / name).read_bytes(), (fresh / name).read_bytes()
        if old != new:
            diff = difflib.unified_diff(
                old.decode(errors="replace").splitlines(),
                new.decode(errors="replace").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
            )
            found.append("\n".join(list(diff)[:40]))
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A fresh generation, in a wide terminal and at another time than the committed
    one: neither may leak into the files."""
    out = tmp_path_factory.mktemp("shell-files")
    env = {**os.environ, "COLUMNS": "200", "SOURCE_DATE_EPOCH": "0"}
    run = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        pytest.fail(f"{GENERATOR.name} exited {run.returncode}:\n{run.stderr}")
    return out


def test_the_generator_tools_are_installed() -> None:
    # Not a skip: they are development requirements, and without them the drift of the
    # committed files would go unseen.
    missing = [m for m in ("shtab", "argparse_manpage") if importlib.util.find_spec(m) is None]
    assert not missing, f"{missing} not importable: pip install -r requirements-dev.txt"


def test_the_generator_writes_the_four_files(generated: pathlib.Path) -> None:
    assert _listing(generated) == FILES


def test_the_committed_files_are_what_the_parser_generates(generated: pathlib.Path) -> None:
    found = _differences(COMMITTED, generated)
    assert not found, f"wheel-data/data differs from the parser; {REGENERATE}:\n" + "\n".join(found)


def test_the_comparison_sees_a_changed_byte_and_a_stray_file(
    generated: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)
    assert _differences(copy, generated) == []
    page = copy / MAN
    page.write_bytes(page.read_bytes().replace(b".SH SEE ALSO", b".SH SEE ALSo", 1))
    (copy / "share" / "stray").write_text("")
    found = _differences(copy, generated)
    assert len(found) == 2, found
    assert "share/stray: committed, no longer generated" in found
    assert "-.SH SEE ALSo\n+.SH SEE ALSO" in found[1], found[1]


# ---- the man page ----


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no subcommands")


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    # --help is every subcommand's and the page leaves it out, as man pages do.
    return {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
        if option.startswith("--")
    }


def _man_sections() -> dict[str, str]:
    """The page's sections by heading, roff escapes and font changes removed."""

    def plain(text: str) -> str:
        return re.sub(r"\\f[BIRP]|\\[,/]", "", text).replace("\\-", "-")

    sections: dict[str, str] = {}
    heading: str | None = ""
    for line in (COMMITTED / MAN).read_text().splitlines():
        if line.startswith(".SH"):
            # A bare .SH takes its heading from the next line.
            heading = plain(line[3:].strip()) or None
        elif heading is None:
            heading = plain(line)
        else:
            sections[heading] = sections.get(heading, "") + plain(line) + "\n"
            continue
        if heading is not None:
            sections[heading] = ""
    return sections


def test_the_command_has_its_ten_subcommands() -> None:
    assert set(_subcommands()) == {
        "demo",
        "fds",
        "scan",
        "share",
        "holders",
        "epoll",
        "who",
        "peers",
        "escapes",
        "metrics",
    }


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_the_man_page_documents_each_subcommand_and_its_long_options(name: str) -> None:
    sections = _man_sections()
    mine = "".join(text for heading, text in sections.items() if f"'kcmp-rs {name}'" in heading)
    assert f"usage: kcmp-rs {name}" in mine, f"no section for {name}: {list(sections)}"
    assert f"kcmp-rs {name}" in sections["POSITIONAL ARGUMENTS"]
    missing = {
        option
        for option in _long_options(_subcommands()[name])
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", mine)
    }
    assert not missing, f"kcmp-rs {name}: {sorted(missing)} not in the man page"


def test_the_man_page_has_the_release_date_and_version() -> None:
    import kcmp_rs

    title = (COMMITTED / MAN).read_text().splitlines()[1].replace("\\-", "-")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    date = re.search(rf"^## \[{re.escape(kcmp_rs.__version__)}\] - (\S+)$", changelog, re.M)
    assert date, f"no release heading for {kcmp_rs.__version__} in CHANGELOG.md"
    assert title == f'.TH KCMP-RS "1" "{date[1]}" "kcmp-rs {kcmp_rs.__version__}" "kcmp-rs manual"'


def _need(*tools: str) -> None:
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        pytest.skip(f"{', '.join(absent)} not installed on this machine")


def test_man_renders_the_page_without_warnings() -> None:
    _need("man", "groff")
    run = subprocess.run(
        ["man", "--warnings", "-l", str(COMMITTED / MAN)],
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80", "LC_ALL": "C.UTF-8"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("KCMP-RS(1)")
    assert "kcmp-rs - which processes share which kernel resources" in run.stdout


# ---- the completions ----


@pytest.mark.parametrize(("shell", "name"), [("bash", BASH), ("zsh", ZSH), ("fish", FISH)])
def test_each_shell_parses_its_completion(shell: str, name: str) -> None:
    _need(shell)
    run = subprocess.run(
        [shell, "-n", str(COMMITTED / name)], capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stderr) == (0, "")


def _bash_complete(words: list[str], cwd: pathlib.Path | None = None) -> set[str]:
    """What the bash completion offers for the last of ``words`` (the word being typed),
    through the function it registers for kcmp-rs, as bash would call it."""
    line = " ".join(shlex.quote(w) for w in words)
    script = f"""
        source {shlex.quote(str(COMMITTED / BASH))}
        spec=$(complete -p kcmp-rs) || exit 3
        fn=$(sed -E 's/.* -F ([^ ]+) .*/\\1/' <<<"$spec")
        COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
        COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
        "$fn" kcmp-rs "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    run = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stderr) == (0, ""), script
    return {w for w in run.stdout.split("\n") if w}


def _fish_complete(line: str) -> set[str]:
    script = f"source {shlex.quote(str(COMMITTED / FISH))}; complete -C {shlex.quote(line)}"
    run = subprocess.run(["fish", "-c", script], capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (0, "")
    return {entry.split("\t")[0] for entry in run.stdout.splitlines()}


def _cases(files: pathlib.Path) -> list[tuple[list[str], set[str]]]:
    """(words typed, last one partial; what completion must offer exactly)."""
    kinds = next(a for a in _subcommands()["scan"]._actions if a.dest == "across").choices
    assert kinds
    return [
        (["kcmp-rs", ""], set(_subcommands())),
        (["kcmp-rs", "sc"], {"scan"}),
        (["kcmp-rs", "h"], {"holders"}),
        (["kcmp-rs", "scan", "--ac"], {"--across"}),
        (["kcmp-rs", "scan", "--across", ""], set(kinds)),
        (["kcmp-rs", "who", "--allow-"], {"--allow-pidfd-getfd"}),
        (["kcmp-rs", "who", f"{files}/fi"], {f"{files}/first.db", f"{files}/fifth.log"}),
    ]


def _files(tmp_path: pathlib.Path) -> pathlib.Path:
    for name in ("first.db", "fifth.log", "other"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_bash_completes_subcommands_options_choices_and_who_paths(
    tmp_path: pathlib.Path,
) -> None:
    _need("bash")
    for words, offered in _cases(_files(tmp_path)):
        assert _bash_complete(words) == offered, words


def test_fish_completes_subcommands_options_choices_and_who_paths(
    tmp_path: pathlib.Path,
) -> None:
    _need("fish")
    for words, offered in _cases(_files(tmp_path)):
        assert _fish_complete(" ".join(words)) == offered, words


def test_a_pid_argument_does_not_complete_files(tmp_path: pathlib.Path) -> None:
    # PIDs are not completed; the files of the working directory would mislead.
    _need("bash")
    (tmp_path / "1234").write_text("")
    assert _bash_complete(["kcmp-rs", "who", "12"], cwd=tmp_path) == {"1234"}
    assert _bash_complete(["kcmp-rs", "fds", "12"], cwd=tmp_path) == set()
