"""``python -m kcmp_rs``: the ``kcmp-rs`` command (see ``kcmp_rs.cli``)."""

import sys

from kcmp_rs.cli import main

if __name__ == "__main__":
    sys.exit(main())
