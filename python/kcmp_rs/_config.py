"""What the environment asks of the package at import: ``KCMP_RS_NO_KCMP`` and
``KCMP_RS_THREADS``.

Standard library only; ``__init__`` reads it once, so an unknown value warns once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

__all__ = [
    "DISABLE_VALUES",
    "KEEP_VALUES",
    "NO_KCMP",
    "THREADS",
    "kcmp_disabled_by_environment",
    "thread_limit_from_environment",
]

NO_KCMP = "KCMP_RS_NO_KCMP"
THREADS = "KCMP_RS_THREADS"

#: Values that keep the package from issuing kcmp(2), in any case, spaces stripped.
DISABLE_VALUES = ("1", "true", "yes", "on")

#: Values that leave kcmp(2) in use, like an unset variable. A value of only spaces
#: is empty once stripped: it reads as blank, so it must not mean "disable".
KEEP_VALUES = ("", "0", "false", "no", "off")


def kcmp_disabled_by_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``KCMP_RS_NO_KCMP`` asks for kcmp(2) never to be issued.

    A value in neither list warns (RuntimeWarning) and leaves kcmp in use: guessing
    either way would hide the typo, and "on" is what an unset variable means.
    """
    raw = environ.get(NO_KCMP)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in DISABLE_VALUES:
        return True
    if value not in KEEP_VALUES:
        warnings.warn(
            f"{NO_KCMP}={raw!r} is not understood, so kcmp(2) stays in use: "
            f"{', '.join(DISABLE_VALUES)} turn it off; unset, empty, "
            f"{', '.join(v for v in KEEP_VALUES if v)} leave it on (any case)",
            RuntimeWarning,
            stacklevel=2,
        )
    return False


def thread_limit_from_environment(environ: Mapping[str, str] = os.environ) -> int:
    """The most threads a native pass may use, as ``KCMP_RS_THREADS`` asks: a positive
    integer; 0 (unset or empty) means as many as the process may run on.

    Any other value warns (RuntimeWarning) and sets no limit: the answers are the same
    on any number of threads, only the time differs.
    """
    raw = environ.get(THREADS, "").strip()
    if not raw:
        return 0
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    warnings.warn(
        f"{THREADS}={environ[THREADS]!r} is not a positive integer, so passes use every "
        "CPU this process may run on",
        RuntimeWarning,
        stacklevel=2,
    )
    return 0
