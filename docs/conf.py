"""Sphinx configuration of the kcmp_rs manual (``make docs``: HTML in target/docs).

Sphinx, because the docstrings are written in reStructuredText's inline markup and
autodoc documents what ``help()`` shows: the installed module's own docstrings and
signatures, the native functions' included. Their annotations live in the stub
``_native.pyi`` only, so ``stub_signature`` takes them from there.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import kcmp_rs

project = "kcmp_rs"
author = "the kcmp_rs developers"
copyright = "the kcmp_rs developers"  # noqa: A001 (Sphinx's setting)
release = kcmp_rs.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

_STUB = Path(kcmp_rs.__file__).with_name("_native.pyi")


def _stub_functions() -> dict[str, tuple[str, str | None]]:
    tree = ast.parse(_STUB.read_text(encoding="utf-8"))
    found: dict[str, tuple[str, str | None]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            returns = ast.unparse(node.returns) if node.returns else None
            found[node.name] = (f"({ast.unparse(node.args)})", returns)
    return found


_NATIVE = _stub_functions()


def stub_signature(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: Any, annotation: Any
) -> tuple[str, str | None] | None:
    """A native function's signature as its stub annotates it."""
    if what == "function" and getattr(obj, "__module__", None) == "kcmp_rs._native":
        return _NATIVE.get(name.rsplit(".", 1)[-1])
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", stub_signature)
