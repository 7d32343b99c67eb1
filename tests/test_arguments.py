"""Argument checks of the single calls: a table of bad values for every parameter of
every public single call (wrong types, bools, out-of-range pids, fds and indexes,
unknown kcmp types), each refused with its exact class and message, by position and by
keyword; the table's good values themselves pass; EPOLL_TFD and out-of-range types
are refused where they do not fit, ``allow_pidfd_getfd`` must be a bool, an fd beyond
32 bits never aliases a small one, and ``support(refresh=)`` and ``target_index`` are
checked. The batch calls' argument checks are in ``test_classify.py``.

Integer-likes: every pid, fd, index and type (single calls, batches, ``scan``) takes
what ``operator.index`` takes (numpy integers, IntEnum members, ``__index__``) with the
same answer as the int, never a bool (``numpy.bool_`` included); an ``__index__`` that
raises TypeError is refused with the usual message (its error as ``__cause__``), any
other exception it raises propagates. ``scan()`` checks every argument before any work.
"""

from __future__ import annotations

import enum
import errno
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import kcmp_rs
import pytest
from _checks import KCMP_MISSING, Raised, needs_kcmp, outcome, raised
from kcmp_rs import KcmpType, Order, baseline

ME = os.getpid()
INT_MAX = 2**31 - 1


PID_TYPE_ERRORS = [
    (True, "bool"),
    (False, "bool"),
    (1.0, "float"),
    ("1", "str"),
    (None, "NoneType"),
    (b"1", "bytes"),
]
PID_VALUE_ERRORS = [-1, 0, 2**31, 2**32 + 3, 2**63, 10**30, -(10**30)]
FD_VALUE_ERRORS = [-1, 2**31, 2**32 + 3, 2**64 + 3, 10**30, -(10**30)]


@dataclass(frozen=True)
class Api:
    """A public function, its parameters in order, and the kind of each."""

    name: str
    fn: Callable[..., object]
    params: tuple[tuple[str, str], ...]  # (name, "pid" | "fd" | "index" | "type")


def _apis() -> list[Api]:
    two_pids = (("pid1", "pid"), ("pid2", "pid"))
    apis = [
        Api("kcmp", kcmp_rs.kcmp, (*two_pids, ("type", "type"), ("idx1", "fd"), ("idx2", "fd"))),
        Api(
            "same_file",
            kcmp_rs.same_file,
            (("pid1", "pid"), ("fd1", "fd"), ("pid2", "pid"), ("fd2", "fd")),
        ),
        Api(
            "same_epoll_target",
            kcmp_rs.same_epoll_target,
            (
                ("pid1", "pid"),
                ("fd", "fd"),
                ("pid2", "pid"),
                ("epfd", "fd"),
                ("target_fd", "fd"),
                ("target_index", "index"),
            ),
        ),
        Api("sharing", kcmp_rs.sharing, two_pids),
    ]
    for name in ("same_vm", "same_files", "same_fs", "same_sighand", "same_io", "same_sysvsem"):
        apis.append(Api(name, getattr(kcmp_rs, name), two_pids))
    return apis


def _bad_cases() -> Iterator[Any]:
    for api in _apis():
        for i, (param, kind) in enumerate(api.params):
            if kind == "type":
                for value, tname in [
                    (True, "bool"),
                    ("1", "str"),
                    (None, "NoneType"),
                    (1.0, "float"),
                ]:
                    yield pytest.param(
                        api,
                        i,
                        value,
                        TypeError,
                        f"type must be a KcmpType or int, not {tname}",
                        id=f"{api.name}-type-{value!r}",
                    )
                for value in [8, 9, -1, 2**32, 2**32 + 1, 10**30]:
                    yield pytest.param(
                        api,
                        i,
                        value,
                        ValueError,
                        f"type must be a KcmpType (0..7), got {value}",
                        id=f"{api.name}-type-{value}",
                    )
                continue
            for value, tname in PID_TYPE_ERRORS:
                yield pytest.param(
                    api,
                    i,
                    value,
                    TypeError,
                    f"{param} must be an int, not {tname}",
                    id=f"{api.name}-{param}-{value!r}",
                )
            what, lo, values = {
                "pid": ("a pid", 1, PID_VALUE_ERRORS),
                "fd": ("an fd", 0, FD_VALUE_ERRORS),
                "index": ("an index", 0, FD_VALUE_ERRORS),
            }[kind]
            for value in values:
                msg = f"{param} must be {what} in {lo}..{INT_MAX}, got {value}"
                yield pytest.param(api, i, value, ValueError, msg, id=f"{api.name}-{param}-{value}")


@pytest.fixture(scope="module")
def good_fd() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDONLY)
    yield fd
    os.close(fd)


def _good_args(api: Api, fd: int) -> list[Any]:
    values = {"pid": ME, "fd": fd, "index": 0, "type": KcmpType.FILE}
    return [values[kind] for _, kind in api.params]


@pytest.mark.parametrize(("api", "index", "value", "cls", "message"), list(_bad_cases()))
def test_bad_arguments(
    api: Api, index: int, value: object, cls: type[Exception], message: str, good_fd: int
) -> None:
    args = _good_args(api, good_fd)
    args[index] = value
    with pytest.raises(cls) as info:
        api.fn(*args)
    assert type(info.value) is cls
    assert str(info.value) == message
    # By keyword, too: the message names the parameter, not a position.
    kwargs = {name: a for (name, _), a in zip(api.params, args)}
    with pytest.raises(cls) as info:
        api.fn(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("api", _apis(), ids=lambda a: a.name)
def test_good_arguments_pass_validation(api: Api, good_fd: int) -> None:
    """The baseline arguments of the table above are themselves accepted."""
    if KCMP_MISSING is not None:
        pytest.skip(KCMP_MISSING)
    args = _good_args(api, good_fd)
    if api.name == "same_epoll_target":
        e = raised(api.fn, *args)  # /dev/null is no epoll fd: the kernel, not validation
        assert isinstance(e, OSError) and e.errno == errno.EINVAL
    else:
        api.fn(*args)


def test_epoll_tfd_and_task_types_are_refused_where_they_do_not_fit(good_fd: int) -> None:
    e = raised(kcmp_rs.kcmp, ME, ME, KcmpType.EPOLL_TFD, good_fd, 0)
    assert type(e) is ValueError and "same_epoll_target" in str(e)
    e = raised(kcmp_rs.kcmp, ME, ME, 7)
    assert type(e) is ValueError and "same_epoll_target" in str(e)


@pytest.mark.parametrize("value", [1, None, "yes"])
def test_allow_pidfd_getfd_must_be_a_bool(value: object, good_fd: int) -> None:
    e = raised(kcmp_rs.same_file, ME, good_fd, ME, good_fd, allow_pidfd_getfd=value)
    assert type(e) is TypeError
    assert "allow_pidfd_getfd" in str(e), str(e)


@needs_kcmp
def test_fd_beyond_32_bits_does_not_alias(pipe: tuple[int, int]) -> None:
    r, w = pipe
    # The raw call shows the kernel's truncation the validation guards against ...
    assert baseline.kcmp(ME, ME, KcmpType.FILE, 2**32 + r, r) is Order.EQUAL
    # ... and the native API refuses it instead of answering for fd r.
    calls: list[tuple[Callable[..., object], tuple[int, ...]]] = [
        (kcmp_rs.kcmp, (ME, ME, KcmpType.FILE, 2**32 + r, r)),
        (kcmp_rs.same_file, (ME, 2**32 + r, ME, r)),
        (kcmp_rs.same_file, (ME, w, ME, 2**32 + r)),
    ]
    for fn, args in calls:
        e = raised(fn, *args)
        assert type(e) is ValueError and f"got {2**32 + r}" in str(e)


def test_support_refresh_and_target_index_are_checked() -> None:
    with pytest.raises(TypeError, match=r"^refresh must be a bool, not int$"):
        kcmp_rs.support(refresh=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^target_index must be an int, not float$"):
        kcmp_rs.same_epoll_target(ME, 0, ME, 0, 0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^target_index must be an index in 0\.\.2147483647"):
        kcmp_rs.same_epoll_target(ME, 0, ME, 0, 0, -1)


# ---- integer-likes: what operator.index takes ----


@pytest.fixture(scope="module")
def np() -> ModuleType:
    numpy: ModuleType = pytest.importorskip("numpy", reason="numpy is a test requirement")
    return numpy


class Index:
    """Any object with ``__index__``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _enum_member(value: int) -> enum.IntEnum:
    return enum.IntEnum("Value", {"V": value}).V  # type: ignore[attr-defined, no-any-return]


def _integer_likes(np: ModuleType) -> dict[str, Callable[[int], object]]:
    return {
        "int64": np.int64,
        "int32": np.int32,
        "uint32": np.uint32,
        "0-d array": np.array,
        "IntEnum": _enum_member,
        "__index__": Index,
    }


def _same_outcome(a: object, b: object) -> bool:
    if isinstance(a, Raised) and isinstance(b, Raised):
        return a.seen == b.seen
    return a == b


@pytest.mark.parametrize("api", _apis(), ids=lambda a: a.name)
def test_integer_likes_give_the_answer_of_the_int(api: Api, good_fd: int, np: ModuleType) -> None:
    """Each parameter in turn given as each integer-like: the same value or the same
    exception as with plain ints (whether kcmp works here or not)."""
    args = _good_args(api, good_fd)
    expected = outcome(api.fn, *args)
    for name, make in _integer_likes(np).items():
        for i in range(len(args)):
            changed = list(args)
            changed[i] = make(int(args[i]))
            got = outcome(api.fn, *changed)
            assert _same_outcome(got, expected), (name, api.params[i], got, expected)
    small = np.uint8(good_fd)  # a dtype too narrow for a pid, fine for this fd
    assert good_fd < 256
    assert _same_outcome(
        outcome(kcmp_rs.same_file, ME, small, ME, small),
        outcome(kcmp_rs.same_file, ME, good_fd, ME, good_fd),
    )


def test_integer_likes_in_batches_and_scan(pipe: tuple[int, int], np: ModuleType) -> None:
    r, w = pipe
    fds = [np.int64(r), Index(w), _enum_member(r)]
    assert kcmp_rs.classify_fds(np.int32(ME), fds) == kcmp_rs.classify_fds(ME, [r, w])
    refs = [(np.int64(ME), np.int32(r)), (_enum_member(ME), Index(w))]
    assert kcmp_rs.classify_files(refs) == kcmp_rs.classify_files([(ME, r), (ME, w)])
    pids = [np.int64(ME), Index(ME)]
    assert kcmp_rs.classify_tasks(pids, np.int64(KcmpType.VM)) == [(ME,)]
    assert kcmp_rs.classify_tasks([ME], Index(int(KcmpType.FS))) == [(ME,)]
    found = kcmp_rs.scan([np.int64(ME), _enum_member(ME), Index(ME)])
    assert found.processes_read == 1 and found.skipped == ()


def test_integer_likes_out_of_range_show_the_int(np: ModuleType) -> None:
    """The ValueError shows the number, not the object's repr (``np.int64(-1)``)."""
    cases: list[tuple[Callable[..., object], tuple[object, ...], str]] = [
        (kcmp_rs.same_vm, (ME, np.int64(-1)), f"pid2 must be a pid in 1..{INT_MAX}, got -1"),
        (kcmp_rs.same_vm, (_enum_member(0), ME), f"pid1 must be a pid in 1..{INT_MAX}, got 0"),
        (kcmp_rs.open_fds, (Index(2**31),), f"pid must be a pid in 1..{INT_MAX}, got {2**31}"),
        (
            kcmp_rs.same_file,
            (ME, np.uint64(2**32 + 3), ME, 0),
            f"fd1 must be an fd in 0..{INT_MAX}, got {2**32 + 3}",
        ),
        (kcmp_rs.kcmp, (ME, ME, np.int8(9)), "type must be a KcmpType (0..7), got 9"),
        (
            kcmp_rs.classify_fds,
            (ME, [0, _enum_member(-2)]),
            f"each fd in fds must be an fd in 0..{INT_MAX}, got -2",
        ),
        (kcmp_rs.scan, ([np.int64(0)],), f"each pid in pids must be a pid in 1..{INT_MAX}, got 0"),
    ]
    for fn, args, message in cases:
        e = raised(fn, *args)
        assert type(e) is ValueError and str(e) == message, (fn, e)


class RefusingIndex:
    """``__index__`` says this is no integer (as numpy's arrays of several items do)."""

    def __index__(self) -> int:
        raise TypeError("no integer here")


class BrokenIndex:
    """``__index__`` fails with its own error."""

    def __index__(self) -> int:
        raise RuntimeError("broken __index__")


class StrIndex:
    """``__index__`` returns something else than an int (``operator.index`` refuses)."""

    def __index__(self) -> str:
        return "3"


def _each_integer_parameter(
    value: object,
) -> list[tuple[Callable[..., object], tuple[Any, ...], str]]:
    """A call per kind of integer parameter with ``value`` in it, and the argument name."""
    return [
        (kcmp_rs.same_vm, (ME, value), "pid2"),
        (kcmp_rs.same_file, (ME, value, ME, 0), "fd1"),
        (kcmp_rs.same_epoll_target, (ME, 0, ME, 0, 0, value), "target_index"),
        (kcmp_rs.kcmp, (ME, ME, value), "type"),
        (kcmp_rs.classify_fds, (ME, [value]), "each fd in fds"),
        (kcmp_rs.classify_files, ([(value, 0)],), "pid in refs"),
        (kcmp_rs.classify_tasks, ([value], KcmpType.VM), "each pid in pids"),
        (kcmp_rs.scan, ([value],), "each pid in pids"),
    ]


def _expected_type(name: str) -> str:
    return "a KcmpType or int" if name == "type" else "an int"


def _answering_index(self: object) -> int:
    warnings.warn("a boolean interpreted as an index", DeprecationWarning, stacklevel=2)
    return 1


# numpy's boolean scalar up to numpy 2.0: its __index__ answers 0 or 1 (and warns).
OldNumpyBool = type("bool_", (), {"__index__": _answering_index})


def test_bools_stay_refused(np: ModuleType) -> None:
    values = [True, False, np.bool_(True), np.bool_(False), OldNumpyBool()]
    for value in values:
        tname = type(value).__name__  # bool, or bool_ (numpy before 2)
        for fn, args, name in _each_integer_parameter(value):
            e = raised(fn, *args)  # a DeprecationWarning here would be an error
            assert type(e) is TypeError, (fn, name, e)
            assert str(e) == f"{name} must be {_expected_type(name)}, not {tname}", (fn, e)


def test_an_index_that_refuses_is_a_type_error_naming_the_argument(np: ModuleType) -> None:
    """TypeError from ``__index__`` (numpy's ``array([1, 2])``, a non-int result): the
    usual message, with the object's own error as the cause."""
    for value, tname in [
        (RefusingIndex(), "RefusingIndex"),
        (StrIndex(), "StrIndex"),
        (np.array([1, 2]), "ndarray"),
    ]:
        for fn, args, name in _each_integer_parameter(value):
            e = raised(fn, *args)
            assert type(e) is TypeError, (fn, name, e)
            assert str(e) == f"{name} must be {_expected_type(name)}, not {tname}", (fn, e)
            assert isinstance(e.__cause__, TypeError), (fn, name)
    for value, tname in [(1.0, "float"), (np.float64(1.0), "float64"), (None, "NoneType")]:
        for fn, args, name in _each_integer_parameter(value):
            e = raised(fn, *args)
            assert str(e) == f"{name} must be {_expected_type(name)}, not {tname}", (fn, e)
            assert e.__cause__ is None, (fn, name)  # nothing of its own to chain


def test_an_index_that_fails_otherwise_propagates() -> None:
    for fn, args, name in _each_integer_parameter(BrokenIndex()):
        e = raised(fn, *args)
        assert type(e) is RuntimeError and str(e) == "broken __index__", (fn, name, e)


@needs_kcmp
def test_baseline_takes_integer_likes_too(pipe: tuple[int, int], np: ModuleType) -> None:
    """The ctypes reference converts through ``__index__`` as well (no validation of its
    own to extend)."""
    r, w = pipe
    assert baseline.kcmp(np.int64(ME), Index(ME), np.int32(KcmpType.FILE), r, r) is Order.EQUAL
    assert baseline.same_file(ME, np.int64(r), ME, _enum_member(w)) is False


# ---- refs items ----


@pytest.mark.parametrize(
    ("item", "what"),
    [
        ((ME,), "a tuple of 1 item"),
        ((), "a tuple of 0 items"),
        ((ME, 0, 1), "a tuple of 3 items"),
        ([ME, 0], "list"),
        (ME, "int"),
        (None, "NoneType"),
    ],
)
def test_refs_items_say_what_is_wrong(item: object, what: str) -> None:
    e = raised(kcmp_rs.classify_files, [(ME, 0), item])
    assert type(e) is TypeError
    assert str(e) == f"each item of refs must be a (pid, fd) tuple, not {what}"


# ---- scan(): checked up front, like the native calls ----


class RaisingIterable:
    def __iter__(self) -> Iterator[int]:
        raise LookupError("from __iter__")


SCAN_BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"pids": 5}, TypeError, "pids must be an iterable of ints, not int"),
    ({"pids": "123"}, TypeError, "pids must be an iterable of ints, not str"),
    ({"pids": b"123"}, TypeError, "pids must be an iterable of ints, not bytes"),
    ({"pids": [ME, 1.0]}, TypeError, "each pid in pids must be an int, not float"),
    ({"pids": [None]}, TypeError, "each pid in pids must be an int, not NoneType"),
    ({"pids": [True]}, TypeError, "each pid in pids must be an int, not bool"),
    ({"pids": [-1]}, ValueError, f"each pid in pids must be a pid in 1..{INT_MAX}, got -1"),
    ({"pids": [2**31]}, ValueError, f"each pid in pids must be a pid in 1..{INT_MAX}, got {2**31}"),
    ({"include_unshared": "no"}, TypeError, "include_unshared must be a bool, not str"),
    ({"include_unshared": 0}, TypeError, "include_unshared must be a bool, not int"),
    ({"include_unshared": None}, TypeError, "include_unshared must be a bool, not NoneType"),
    ({"allow_pidfd_getfd": 1}, TypeError, "allow_pidfd_getfd must be a bool, not int"),
    ({"allow_pidfd_getfd": "yes"}, TypeError, "allow_pidfd_getfd must be a bool, not str"),
    ({"progress": 5}, TypeError, "progress must be callable or None, not int"),
    ({"progress": "print"}, TypeError, "progress must be callable or None, not str"),
    ({"pids": RaisingIterable()}, LookupError, "from __iter__"),
]


@pytest.mark.parametrize(("kwargs", "cls", "message"), SCAN_BAD, ids=[m for *_, m in SCAN_BAD])
def test_scan_checks_its_arguments_before_any_work(
    kwargs: dict[str, Any], cls: type[Exception], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*args: object, **kw: object) -> None:
        raise AssertionError("scan() began its work before checking its arguments")

    for step in ("list_pids", "native_scan"):
        monkeypatch.setattr(kcmp_rs._scan, step, no_work)
    call = {"pids": [ME], **kwargs}
    e = raised(kcmp_rs.scan, **call)
    assert type(e) is cls and str(e) == message, repr(e)
    if kwargs.get("pids", [ME]) == [ME]:  # the same refusal with every process (pids=None)
        e = raised(kcmp_rs.scan, **{**call, "pids": None})
        assert type(e) is cls and str(e) == message, repr(e)


def test_scan_takes_good_flags_and_a_callable_progress() -> None:
    seen: list[tuple[int, int]] = []
    found = kcmp_rs.scan(
        (p for p in [ME]),
        include_unshared=True,
        allow_pidfd_getfd=False,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert found.processes_read == 1 and seen == [(1, 1)]
    assert found.descriptions  # include_unshared: this process's unshared fds too
