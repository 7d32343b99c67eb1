"""``Channel``: a pipe, FIFO, Unix socket pair or pty between processes, as a scan with
``ipc`` reports it (``Scan.channels``, ``kcmp-rs scan --ipc``)."""

from __future__ import annotations

from dataclasses import dataclass

from kcmp_rs._schema import ChannelDict

__all__ = ["Channel"]


@dataclass(frozen=True)
class Channel:
    """A channel between processes a scan with ``ipc`` found (``Scan.channels``):
    ``kind`` (``"pipe"``, ``"fifo"``, ``"unix"``, ``"pty"``) and its ends, each a side
    (as in ``End``; both ends of a Unix socket pair are ``"socket"``) with the indices
    of its descriptions in ``Scan.descriptions``."""

    kind: str
    ends: tuple[tuple[str, tuple[int, ...]], ...]

    def to_dict(self) -> ChannelDict:
        """The channel as a JSON object: ``kind`` and ``ends``."""
        return {
            "kind": self.kind,
            "ends": [{"side": s, "descriptions": list(on)} for s, on in self.ends],
        }
