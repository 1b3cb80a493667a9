"""Planted robustness bugs of the OPC UA simulator, for the fuzzer and the RB suite to find.

- hang-on-short-message-size: a chunk whose MessageSize is smaller than its own 8-byte
  header (so it disagrees with the bytes sent) wedges the server's receive path: from then
  on no connection gets an answer, new ones included, until the process is restarted.
  asyncua itself closes such a connection, which is the conformant behaviour.
"""

from __future__ import annotations

import logging
from typing import Any

from protocols.opcua.frames import HEADER_SIZE, ChunkHeader
from simulators.opcua.uatcp_guard import UATCP_DEFECTS

_log = logging.getLogger("simulators.opcua")

HANG_ON_SHORT_MESSAGE_SIZE = "hang-on-short-message-size"
# UA TCP framing defects (simulators/opcua/uatcp_guard.py) ride along: same per-server set.
PLANTED_BUGS = frozenset({HANG_ON_SHORT_MESSAGE_SIZE}) | UATCP_DEFECTS


class PlantedBugs:
    """Shared by every connection of one server (the wedge is server-wide)."""

    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects & PLANTED_BUGS
        self.wedged = False

    def swallow(self, protocol: Any, data: bytes) -> bool:
        """True when the bytes must vanish instead of reaching asyncua's parser."""
        if self.wedged:
            return True
        if HANG_ON_SHORT_MESSAGE_SIZE in self.defects:
            pending = bytes(getattr(protocol, "_buffer", b"")) + data
            if len(pending) >= HEADER_SIZE:
                size = ChunkHeader.decode(pending).message_size
                if size < HEADER_SIZE:
                    _log.warning("planted bug: MessageSize %d: the receive path wedges", size)
                    self.wedged = True
                    return True
        return False
