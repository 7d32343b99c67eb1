"""What the environment asks of the package at import: ``KCMP_RS_NO_KCMP``.

Standard library only; ``__init__`` reads it once, so an unknown value warns once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

__all__ = ["DISABLE_VALUES", "KEEP_VALUES", "NO_KCMP", "kcmp_disabled_by_environment"]

NO_KCMP = "KCMP_RS_NO_KCMP"

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
