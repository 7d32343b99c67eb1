"""``python -m kcmp_rs``: the ``kcmp-rs`` command (see ``kcmp_rs.cli``), through the
console script's entry point (``_kcmp_rs_cli``), so that Ctrl-C from here on ends it
quietly. Python imports the package before this runs: a Ctrl-C while it does is
Python's own ``KeyboardInterrupt`` (the ``kcmp-rs`` script has no such window)."""

import sys

if __name__ == "__main__":
    from _kcmp_rs_cli import main

    sys.exit(main())
