"""The ``kcmp-rs`` console script's entry point (``[project.scripts]``): Ctrl-C at any
moment ends the command quietly, never with a traceback.

A package of its own, outside ``kcmp_rs``: importing any ``kcmp_rs.x`` runs
``kcmp_rs/__init__`` first (the native module, every result type: about 0.1 s), and a
Ctrl-C in that time would raise ``KeyboardInterrupt`` out of an import, before any
handler of the command is in place. So the first thing this package does, as it is
imported, is set SIGINT to its default action (the process dies of it, as a C tool
does); ``main`` then imports the command, whose ``console`` turns Ctrl-C back into
``KeyboardInterrupt`` once its own handling is in place (status 130, clean-up run).

Only the ``kcmp-rs`` script and ``python -m kcmp_rs`` import this, as the process's
main program: the library (``import kcmp_rs``) never touches a signal handler. What
stays open is CPython's own start-up, before this package runs: a Ctrl-C there is the
interpreter's (``Fatal Python error: init_import_site`` or a ``KeyboardInterrupt``
from the script's import line), which no package can prevent.
"""

# ``_signal`` (built in, loaded at interpreter start-up) and nothing else: ``signal``
# would import ``enum``, ``functools`` and ``collections`` first.
import _signal  # type: ignore[import-not-found,unused-ignore]

#: SIGINT was Python's ``KeyboardInterrupt`` handler, now its default action until the
#: command's own handling is in place. Python installs its handler only where SIGINT
#: was at its default action: one the shell set to be ignored (``kcmp-rs ... &``) was
#: not, and stays ignored.
_SIGINT_RESET: bool = _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
if _SIGINT_RESET:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)

__all__ = ["main"]


def main() -> int:
    """Runs ``kcmp-rs`` (``kcmp_rs.cli.main``) with ``sys.argv``; the exit status."""
    from kcmp_rs.cli._main import console

    status: int = console(sigint_default=_SIGINT_RESET)
    return status
