"""The ``kcmp-rs`` command (``main``): which processes share which kernel resources.

Rooms: ``_io`` (the streams and exit statuses), ``_render`` (tables, DOT, JSON Lines:
pure functions), ``_common`` (what the subcommands share), ``_queries`` (``holders``,
``epoll``, ``share``), ``_escapes`` (the escape audit), ``_audit`` (``scan
--across/--inside/--allow``) and ``_main`` (the parser, ``demo``, ``fds``, ``scan``,
``main``).
"""

from kcmp_rs.cli._main import main

__all__ = ["main"]
