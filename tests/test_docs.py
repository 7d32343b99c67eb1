"""The public API documents itself at runtime: for every function ``help()`` and
``inspect.signature()`` show each parameter and the docstring says in prose what it
does; ``help(kcmp_rs.scan)`` carries the JSON schema ``kcmp-rs scan -J`` follows.

The native functions get the same checks: their docs come from the Rust binding
(``///`` comments and ``text_signature`` in src/py/mod.rs)."""

from __future__ import annotations

import inspect
import os
import pydoc
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import kcmp_rs
import pytest
from kcmp_rs import Description, Member, Scan, Skipped, _native, cli

# The same on every kernel: the kernel-test guests leave it out (pyproject's markers).
pytestmark = pytest.mark.userland


def public_routines(*, native: bool) -> list[str]:
    """The names in ``kcmp_rs.__all__`` that are functions: native (PyO3) or Python."""
    return [
        name
        for name in kcmp_rs.__all__
        if inspect.isroutine(getattr(kcmp_rs, name))
        and inspect.isbuiltin(getattr(kcmp_rs, name)) == native
    ]


def _prose(name: str, doc: str | None) -> str:
    """The docstring without a first line that only restates the signature, as PyO3
    writes one (``name(a, b) -> T``)."""
    lines = (doc or "").strip().splitlines()
    if lines and re.fullmatch(rf"{re.escape(name)}\(.*\)(\s*->\s*\S.*)?", lines[0].strip()):
        lines = lines[1:]
    return "\n".join(lines).strip()


def _help_signature(name: str, func: Callable[..., Any]) -> str:
    """The parameter list ``help(func)`` shows (Python 3.13 spreads a long one over
    several lines)."""
    shown = pydoc.plain(pydoc.render_doc(func))
    found = re.search(rf"^{re.escape(name)}\(", shown, flags=re.M)
    assert found, f"help({name}) shows no signature:\n{shown}"
    depth = 0
    for end in range(found.end() - 1, len(shown)):
        depth += {"(": 1, ")": -1}.get(shown[end], 0)
        if depth == 0:
            break
    return shown[found.end() - 1 : end + 1]


def assert_documented(name: str, func: Callable[..., Any]) -> None:
    """``func`` has a signature naming each parameter, shown by ``help()``, and a
    docstring with at least one sentence beyond its signature line."""
    signature = inspect.signature(func)  # ValueError: no signature at runtime
    catch_all = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    assert not [p for p in signature.parameters.values() if p.kind in catch_all], (
        f"{name}{signature} hides its parameters"
    )
    listed = _help_signature(name, func)
    for parameter in signature.parameters:
        assert re.search(rf"\b{parameter}\b", listed), f"help({name}) omits {parameter}: {listed}"
    prose = _prose(name, func.__doc__)
    words = re.findall(r"[A-Za-z]{2,}", prose)
    assert len(words) >= 3 and re.search(r"[.:!?]", prose), (
        f"{name}: no prose beyond the signature line: {func.__doc__!r}"
    )


# ---- every Python function in __all__, and the CLI's main ----


def test_all_holds_only_native_and_python_functions() -> None:
    # Anything else (a partial, a callable object) would escape both lists below.
    python = public_routines(native=False)
    native = public_routines(native=True)
    for name in kcmp_rs.__all__:
        obj = getattr(kcmp_rs, name)
        if callable(obj) and not inspect.isclass(obj):
            assert name in python or name in native, name
            assert inspect.isfunction(obj) or inspect.isbuiltin(obj), name
    assert {"scan", "sharing", "support", "same_vm"} <= set(python)
    assert {"kcmp", "same_file", "classify_fds", "classify_files"} <= set(native)


@pytest.mark.parametrize("name", public_routines(native=False))
def test_python_function_is_documented(name: str) -> None:
    assert_documented(name, getattr(kcmp_rs, name))


#: The convention of every public function's docstring: each parameter named
#: (``name``), a sentence that starts "Returns" and one that starts "Raises" (a
#: function that raises nothing of its own says so: "Raises nothing").
_SENTENCE_START = r"(?:^|[.:;]\s+|\n\s*)"


def _check_docstring(func: Callable[..., Any]) -> None:
    name = func.__name__
    doc = inspect.getdoc(func) or ""
    prose = _prose(name, doc)
    missing = [p for p in inspect.signature(func).parameters if not re.search(rf"\b{p}\b", prose)]
    assert not missing, f"help({name}) does not name {missing}:\n{doc}"
    assert re.search(_SENTENCE_START + r"Returns\b", prose), f"help({name}): no Returns:\n{doc}"
    assert re.search(_SENTENCE_START + r"Raises\b", prose), f"help({name}): no Raises:\n{doc}"


@pytest.mark.parametrize("name", [*public_routines(native=False), *public_routines(native=True)])
def test_docstring_names_every_parameter_the_return_and_the_raises(name: str) -> None:
    _check_docstring(getattr(kcmp_rs, name))


def test_every_native_function_carries_its_signature() -> None:
    """PyO3 gives each native function a ``__text_signature__`` (``#[pyo3(signature)]``
    or ``text_signature``): ``inspect.signature`` and ``help()`` show the parameters."""
    routines = {n: f for n, f in vars(_native).items() if inspect.isbuiltin(f)}
    assert {"kcmp", "scan", "same_task", "holders", "commands"} <= set(routines)
    for name, func in routines.items():
        text = getattr(func, "__text_signature__", None)
        assert text, f"_native.{name} has no __text_signature__"
        signature = inspect.signature(func)  # ValueError if the text does not parse
        listed = re.findall(r"(?:\(|,\s*)(\w+)", text.replace("$module, ", ""))
        assert list(signature.parameters) == listed, (name, text)


def test_the_docstring_test_can_fail() -> None:
    def undocumented(pid: int, flag: bool = False) -> int:
        """Does something with ``pid``. Returns 0."""
        return 0

    with pytest.raises(AssertionError, match=r"does not name \['flag'\]"):
        _check_docstring(undocumented)
    undocumented.__doc__ = "Does something with ``pid`` and ``flag``. Returns 0."
    with pytest.raises(AssertionError, match=r"no Raises"):
        _check_docstring(undocumented)
    undocumented.__doc__ += " Raises nothing."
    _check_docstring(undocumented)


def test_cli_main_is_documented() -> None:
    assert_documented("main", cli.main)


@pytest.mark.parametrize(
    "name", [n for n in kcmp_rs.__all__ if inspect.isclass(getattr(kcmp_rs, n))]
)
def test_public_class_is_documented(name: str) -> None:
    # A dataclass without a docstring gets its signature as __doc__: not prose.
    cls = getattr(kcmp_rs, name)
    prose = _prose(name, cls.__doc__)
    assert len(re.findall(r"[A-Za-z]{2,}", prose)) >= 3, f"{name}: {cls.__doc__!r}"


# ---- help(kcmp_rs.scan): the contract of the scan ----


def _schema(doc: str) -> str:
    start = doc.index("JSON schema of ``Scan.to_dict()``")
    end = doc.index("``kcmp-rs scan -j`` (JSON Lines)", start)
    return doc[start:end]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_scan_docstring_schema_names_every_json_key() -> None:
    # Names that are not UTF-8 bring in the optional *_bytes_b64 keys, a boundary the
    # optional boundary keys, ipc the channels.
    not_utf8 = os.fsdecode(b"x\xff")
    result = Scan(
        (Description(not_utf8, "rw", (Member(1, 2, not_utf8, "net:[1]"),), "REG", ("net:[1]",)),),
        (Skipped(3, "exited"),),
        1,
        1,
        ((4, 5),),
        ((6, 7),),
        (kcmp_rs.Channel("fifo", (("read", (0,)), ("write", (0,)))),),
        ("a note",),
    )
    documented = set(re.findall(r'"(\w+)":', _schema(kcmp_rs.scan.__doc__ or "")))
    assert documented == _keys(result.to_dict())


def test_help_of_scan_shows_guarantees_and_schema() -> None:
    # The pointer the CLI's help gives: `python -m pydoc kcmp_rs.scan`.
    done = subprocess.run(
        [sys.executable, "-m", "pydoc", "kcmp_rs.scan"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PAGER": "cat", "TERM": "dumb"},
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert "function scan" in text
    for phrase in (
        "include_unshared",
        "allow_pidfd_getfd",
        "progress",
        '"fd table owner exited"',
        "RLIMIT_NOFILE",
        "Scan.undecided",
        "target_bytes_b64",
        '"fd_table_shared": [[int, ...]]',
    ):
        assert phrase in text, phrase


@pytest.mark.parametrize("name", public_routines(native=True))
def test_native_function_is_documented(name: str) -> None:
    assert_documented(name, getattr(kcmp_rs, name))


@pytest.mark.parametrize(
    "name",
    ["same_vm", "same_files", "same_fs", "same_sighand", "same_io", "same_sysvsem", "sharing"],
)
def test_the_task_calls_document_their_parameters_and_errors(name: str) -> None:
    """``help()`` of each task call names its parameters, what it returns and every
    exception a caller can meet, not one line alone."""
    import kcmp_rs

    doc = getattr(kcmp_rs, name).__doc__ or ""
    for needed in ("``pid1``", "``pid2``", "ProcessGoneError", "ProcessAccessError",
                   "KcmpUnavailableError", "TypeError", "ValueError"):  # fmt: skip
        assert needed in doc, (name, needed)
    assert ("Returns" in doc) or ("a ``Sharing``" in doc), name
