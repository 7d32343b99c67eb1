"""Writes the manual page and the bash, zsh and fish completions of ``kcmp-rs``, all
from its argparse parser (``kcmp_rs.cli._main.build_parser()``), under
``wheel-data/data/share/``: pyproject's ``[tool.maturin] data`` ships that directory as
the wheel's data, so pip puts the files under ``<prefix>/share/``.

    python scripts/gen_shell_files.py [--out DIR]     (`make shell-files`)

DIR defaults to ``wheel-data/data``. tests/test_shell_files.py regenerates into a
temporary directory and fails when the committed files differ from the parser.

The man page comes from argparse-manpage and the completions from shtab (development
requirements only: the wheel carries their output, never them). The output is the same
on every run: the page's date is the release date of the version in CHANGELOG.md, and
the usage lines are wrapped for 72 columns whatever the terminal.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys

import kcmp_rs
import shtab
from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]
from kcmp_rs.cli._main import build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "wheel-data" / "data"

#: Where each file goes under the output directory: the places man-db, bash-completion,
#: zsh (its site-functions in fpath) and fish (vendor_completions.d) look under a prefix.
FILES = {
    "man": "share/man/man1/kcmp-rs.1",
    "bash": "share/bash-completion/completions/kcmp-rs",
    "zsh": "share/zsh/site-functions/_kcmp-rs",
    "fish": "share/fish/vendor_completions.d/kcmp-rs.fish",
}

#: Positional arguments with this metavar name files: their completion offers files.
FILE_METAVAR = "PATH"

_NOTE = (
    "Generated from kcmp_rs.cli._main.build_parser() by scripts/gen_shell_files.py "
    "(make shell-files): do not edit."
)

_SEE_ALSO = ".BR kcmp (2),\n.BR pidfd_getfd (2),\n.BR proc (5),\n.BR lsfd (1)"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise SystemExit("gen_shell_files: the parser has no subcommands")


def build() -> tuple[argparse.ArgumentParser, str]:
    """The command's parser, its PATH arguments marked for file completion, and the
    version it reports."""
    # argparse wraps usage at the terminal's width (COLUMNS): fixed, so that the page is
    # the same in a terminal, a pipe and CI, and narrow enough that each usage line fits
    # the text width of the page in an 80-column terminal.
    os.environ["COLUMNS"] = "72"
    parser = build_parser()
    marked = 0
    for sub in _subparsers(parser).values():
        for action in sub._actions:
            if not action.option_strings and action.metavar == FILE_METAVAR:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
                marked += 1
    if not marked:  # `who PATH...` must complete files: a renamed metavar would lose it
        raise SystemExit(f"gen_shell_files: no positional argument named {FILE_METAVAR}")
    return parser, kcmp_rs.__version__


def release_date(version: str, changelog: pathlib.Path = ROOT / "CHANGELOG.md") -> str:
    """The date of ``## [version] - YYYY-MM-DD`` in the changelog: the page's date,
    which changes with a release, not with every build."""
    pattern = rf"^## \[{re.escape(version)}\] - (\d{{4}}-\d{{2}}-\d{{2}})\s*$"
    found = re.search(pattern, changelog.read_text(encoding="utf-8"), re.MULTILINE)
    if not found:
        raise SystemExit(
            f"gen_shell_files: no '## [{version}] - YYYY-MM-DD' heading in {changelog.name}: "
            "the man page's date is the release date of the version it documents"
        )
    return found.group(1)


def man_page(parser: argparse.ArgumentParser, version: str, date: str) -> str:
    page = Manpage(parser)
    # Attributes, not the constructor's _data: the way argparse-manpage documents.
    page.date = date
    page.source = f"kcmp-rs {version}"
    page.manual = "kcmp-rs manual"
    page.description = "which processes share which kernel resources, from kcmp(2)"
    page.add_section("SEE ALSO", "=", _SEE_ALSO)
    text: str = str(page)
    return f'.\\" {_NOTE}\n{text}'


def completion(parser: argparse.ArgumentParser, shell: str) -> str:
    text: str = shtab.complete(parser, shell=shell)
    first, _, rest = text.partition("\n")
    if first.startswith("#compdef"):  # zsh reads it on the first line only
        return f"{first}\n# {_NOTE}\n{rest}"
    return f"# {_NOTE}\n{text}"


def generate() -> dict[str, str]:
    """Each file's path under the output directory and its text."""
    parser, version = build()
    texts = {"man": man_page(parser, version, release_date(version))}
    texts.update({shell: completion(parser, shell) for shell in ("bash", "zsh", "fish")})
    return {FILES[kind]: text for kind, text in texts.items()}


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, metavar="DIR")
    args = cli.parse_args(argv)
    for relative, text in generate().items():
        path = args.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        # Bytes: no platform newline translation, the committed files are LF.
        path.write_bytes(text.encode("utf-8"))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
