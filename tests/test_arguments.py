"""Argument checks of the single calls: a table of bad values for every parameter of
every public single call (wrong types, bools, out-of-range pids, fds and indexes,
unknown kcmp types), each refused with its exact class and message, by position and by
keyword; the table's good values themselves pass; EPOLL_TFD and out-of-range types
are refused where they do not fit, ``allow_pidfd_getfd`` must be a bool, an fd beyond
32 bits never aliases a small one, and ``support(refresh=)`` and ``target_index`` are
checked. The batch calls' argument checks are in ``test_classify.py``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kcmp_rs
import pytest
from _checks import KCMP_MISSING, needs_kcmp, raised
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
