"""The layout ARCHITECTURE.md describes holds: size limits, and what each room may
import. These read the sources as text; they run no process."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "kcmp_rs"

# (glob under the root, most lines allowed)
SIZE_LIMITS = [
    ("src/**/*.rs", 1000),
    ("python/kcmp_rs/**/*.py", 600),
    ("tests/*.py", 800),
    ("tests/container/*.py", 800),
]


def _files(pattern: str) -> list[pathlib.Path]:
    found = sorted(ROOT.glob(pattern))
    assert found, f"no file matches {pattern}: the layout moved, update this test"
    return found


@pytest.mark.parametrize(("pattern", "limit"), SIZE_LIMITS)
def test_files_stay_within_their_size_limit(pattern: str, limit: int) -> None:
    too_long: dict[str, int] = {}
    for path in _files(pattern):
        n = len(path.read_text().splitlines())
        if n > limit:
            too_long[str(path.relative_to(ROOT))] = n
    assert not too_long, f"over {limit} lines: {too_long}"


def _package_imports(module: pathlib.Path) -> set[str]:
    """The kcmp_rs modules ``module`` imports, anywhere in it (``kcmp_rs._native``...)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "kcmp_rs":
                names.update(f"kcmp_rs.{a.name}" for a in node.names)
            elif node.module.startswith("kcmp_rs."):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("kcmp_rs"))
    return names


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("_errors.py", set()),
        ("_text.py", set()),
        # _channels for an annotation only (TYPE_CHECKING).
        ("_results.py", {"kcmp_rs._channels", "kcmp_rs._schema", "kcmp_rs._text"}),
        ("_channels.py", {"kcmp_rs._schema"}),
        ("_example.py", {"kcmp_rs._native"}),
        ("_proc.py", {"kcmp_rs._native"}),
        ("cli/_render.py", {"kcmp_rs._channels", "kcmp_rs._results", "kcmp_rs._text"}),
        ("baseline.py", {"kcmp_rs._errors"}),
        ("_boundary.py", {"kcmp_rs._native"}),
        (
            "_scan.py",
            {
                "kcmp_rs._boundary",
                "kcmp_rs._channels",
                "kcmp_rs._native",
                "kcmp_rs._proc",
                "kcmp_rs._results",
                "kcmp_rs._errors",
            },
        ),
        (
            "_endpoints.py",
            {
                "kcmp_rs._errors",
                "kcmp_rs._native",
                "kcmp_rs._proc",
                "kcmp_rs._results",
                "kcmp_rs._scan",
                "kcmp_rs._schema",
            },
        ),
        (
            "_escapes.py",
            {
                "kcmp_rs._native",
                "kcmp_rs._proc",
                "kcmp_rs._results",
                "kcmp_rs._scan",
                "kcmp_rs._schema",
                "kcmp_rs._text",
            },
        ),
        (
            "cli/_audit.py",
            {
                "kcmp_rs._native",  # the report's type only: the core writes its JSON
                "kcmp_rs._boundary",
                "kcmp_rs.cli._common",
                "kcmp_rs.cli._io",
                "kcmp_rs.cli._render",
                "kcmp_rs._results",
            },
        ),
        (
            "cli/_escapes.py",
            {
                "kcmp_rs._escapes",
                "kcmp_rs.cli._common",
                "kcmp_rs.cli._io",
                "kcmp_rs.cli._render",
            },
        ),
        (
            "_metrics.py",
            {
                "kcmp_rs._escapes",
                "kcmp_rs._native",
                "kcmp_rs._proc",
                "kcmp_rs._results",
                "kcmp_rs._scan",
            },
        ),
        ("cli/_metrics.py", {"kcmp_rs._metrics", "kcmp_rs.cli._common", "kcmp_rs.cli._io"}),
        (
            "cli/_watch.py",
            {
                "kcmp_rs._results",
                "kcmp_rs._scan",  # one native scan a pass: nothing here reads /proc
                "kcmp_rs.cli._common",
                "kcmp_rs.cli._io",
            },
        ),
        ("_schema.py", set()),
        ("_config.py", set()),
        ("cli/_io.py", {"kcmp_rs._config"}),
        (
            "_queries.py",
            {"kcmp_rs._native", "kcmp_rs._proc", "kcmp_rs._results", "kcmp_rs._scan"},
        ),
        ("_leaks.py", {"kcmp_rs._native", "kcmp_rs._proc", "kcmp_rs._results"}),
        # Only pytest imports the plugin, and the plugin only the checker.
        ("pytest_plugin.py", {"kcmp_rs._leaks"}),
    ],
)
def test_python_rooms_import_only_what_they_may(module: str, allowed: set[str]) -> None:
    imported = _package_imports(PACKAGE / module)
    assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_the_library_never_imports_its_command() -> None:
    library = [p for p in PACKAGE.glob("*.py") if p.name != "__main__.py"]
    assert len(library) > 10, "the package's modules moved: update this test"
    importing = {
        p.name: sorted(n for n in _package_imports(p) if n.startswith("kcmp_rs.cli"))
        for p in library
    }
    assert {k: v for k, v in importing.items() if v} == {}


def test_the_console_entry_package_imports_nothing_at_module_level() -> None:
    # Its import must end before Ctrl-C could find a traceback to print: the command
    # (and with it kcmp_rs/__init__) is imported inside main(), after SIGINT is reset.
    entry = ROOT / "python" / "_kcmp_rs_cli" / "__init__.py"
    tree = ast.parse(entry.read_text())
    top = [
        [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert top == [["_signal"]], top
    inside = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert inside == {"kcmp_rs.cli._main"}, inside


def test_there_is_no_module_shadowing_the_scan_function() -> None:
    assert not (PACKAGE / "scan.py").exists()
    assert not (PACKAGE / "scan").exists()


def test_cli_imports_the_example_family_only_inside_a_function() -> None:
    tree = ast.parse((PACKAGE / "cli" / "_main.py").read_text())
    top_level = [
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "kcmp_rs._example"
    ]
    assert not top_level, "cli/_main.py imports kcmp_rs._example at import time"


def _rust_uses(path: pathlib.Path) -> set[str]:
    """The crate rooms a Rust file names (``crate::x``)."""
    return set(re.findall(r"\bcrate::([a-z_]+)", path.read_text()))


def test_the_engine_uses_no_other_room_and_no_libc_or_pyo3() -> None:
    for path in [ROOT / "src" / "engine.rs", *(ROOT / "src" / "engine").glob("*.rs")]:
        text = path.read_text()
        assert _rust_uses(path) == set(), f"{path.name} uses {_rust_uses(path)}"
        assert not re.search(r"\blibc::|\bpyo3\b", text), path.name


def test_only_the_binding_knows_pyo3() -> None:
    outside = [
        str(path.relative_to(ROOT))
        for path in _files("src/**/*.rs")
        if re.search(r"\bpyo3::", path.read_text()) and "src/py/" not in str(path)
    ]
    assert outside == [], outside


def test_unsafe_appears_only_in_sys() -> None:
    # The sys room: src/sys.rs and its submodules under src/sys/.
    unsafe = re.compile(r"\bunsafe\s*(\{|fn\b|impl\b)")
    outside = [
        str(path.relative_to(ROOT))
        for path in _files("src/**/*.rs")
        if path.relative_to(ROOT).parts[:2] not in (("src", "sys.rs"), ("src", "sys"))
        and unsafe.search(path.read_text())
    ]
    assert outside == [], outside
