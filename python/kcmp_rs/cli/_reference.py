"""The manual's command reference (docs/cli-reference.md), written from the parser.

``python -m kcmp_rs.cli._reference > docs/cli-reference.md`` (``make cli-reference``)
rewrites it; a test fails when the committed page and the parser disagree. Built from
the parser's actions, not from ``format_help()``, whose layout changes between Python
versions and terminal widths.
"""

from __future__ import annotations

import argparse
import sys

from kcmp_rs.cli._main import build_parser

Subcommands = argparse._SubParsersAction  # argparse names no public type for it


def _subcommands(parser: argparse.ArgumentParser) -> Subcommands[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError("the parser has no subcommands")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    words = [parser.prog.split()[0], name]
    if any(a.option_strings for a in parser._actions if a.dest != "help"):
        words.append("[options]")
    for action in parser._actions:
        if action.option_strings:
            continue
        metavar = str(action.metavar or action.dest.upper())
        words.append(
            {"?": f"[{metavar}]", "+": f"{metavar} [{metavar} ...]"}.get(str(action.nargs), metavar)
        )
    return " ".join(words)


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"`{o}`" for o in action.option_strings)
        takes = "" if action.nargs == 0 else f"`{action.metavar or action.dest.upper()}`"
        if action.choices:
            takes += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        rows.append(f"| {flags} | {takes} | {_cell(help_text)} |")
    return rows


def render() -> str:
    """The page, as Markdown."""
    parser = build_parser()
    lines = [
        "# Command reference",
        "",
        "Written from the parser by `make cli-reference`; a test fails when this page and",
        "`kcmp-rs --help` disagree. The guide to the command: [The command](cli.md).",
        "",
        "```text",
        f"{parser.prog} [--version] COMMAND ...",
        "",
        parser.description or "",
        "",
        (parser.epilog or "").rstrip(),
        "```",
    ]
    for name, sub in _subcommands(parser).choices.items():
        lines += ["", f"## {name}", "", "```text", _synopsis(name, sub), "```", ""]
        lines += [sub.description or "", "", "| option | argument | what |", "|---|---|---|"]
        lines += _option_rows(sub)
        if sub.epilog:
            lines += ["", "```text", sub.epilog.rstrip(), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
