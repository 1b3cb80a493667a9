"""Planted robustness bugs of the OPC UA simulator, for the fuzzer and the RB suite to find.

- hang-on-short-message-size: a chunk whose MessageSize is smaller than its own 8-byte
  header (so it disagrees with the bytes sent) wedges the server's receive path: from then
  on no connection gets an answer, new ones included, until the process is restarted.
  asyncua itself closes such a connection, which is the conformant behaviour.
- overload-lockout: malformed UA TCP framing refused while more than OVERLOAD_CONNECTIONS
  connections are open makes the server drop every byte it receives, from every client, for
  LOCKOUT_S (an attack "protection" that takes service away for longer than RB-4's bound; floods
  of well-formed channels and one malformed connection at a time do not trigger it).
- dies-on-corrupted-client-cert: an OpenSecureChannel whose SenderCertificate cannot be parsed
  kills the OPC UA service: that connection and every later one are closed before any answer,
  until the process is restarted (TS-4: a corrupted certificate is refused and the DUT stays alive).

The UA TCP framing defects of simulators/opcua/uatcp_guard.py are declared here too: they are
planted the same way (a name in `Behaviour.planted`, the per-server set `PlantedBugs` holds and
hands to each connection's guard).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from typing import Any

from protocols.opcua.frames import HEADER_SIZE, ChunkHeader
from simulators.defects import Defect, defect
from simulators.opcua.behaviour import Behaviour
from simulators.opcua.uatcp_guard import (
    ACCEPTS_SMALL_BUFFERS,
    NO_CHUNK_COUNT_LIMIT,
    SILENT_ON_MALFORMED_MESSAGE,
)

_log = logging.getLogger("simulators.opcua")

HANG_ON_SHORT_MESSAGE_SIZE = "hang-on-short-message-size"
OVERLOAD_LOCKOUT = "overload-lockout"
DIES_ON_CORRUPTED_CERTIFICATE = "dies-on-corrupted-client-cert"
OVERLOAD_CONNECTIONS = 8
LOCKOUT_S = 6.0


def _planted(name: str, description: str, breaks: Iterable[str], may_affect: Iterable[str] = ()) -> Defect:
    def change(b: Behaviour) -> Behaviour:
        return dataclasses.replace(b, planted=b.planted | {name})

    return defect(name, "opcua", description, breaks, may_affect, change=change)


PLANTED_DEFECTS: tuple[Defect, ...] = (
    _planted(
        HANG_ON_SHORT_MESSAGE_SIZE,
        "A chunk whose MessageSize is smaller than its header wedges the server: no connection is answered "
        "until it is restarted (simulators/opcua/planted_bugs.py).",
        {"opcua.rb.fuzz-chunk-headers"},
        {"opcua.kb.short-message-size"},  # sends MessageSize 0, 4 and 7: the server wedges there too
    ),
    _planted(
        OVERLOAD_LOCKOUT,
        f"Malformed framing while more than {OVERLOAD_CONNECTIONS} connections are open makes the server "
        f"ignore every client for {LOCKOUT_S:g} s (simulators/opcua/planted_bugs.py).",
        {"opcua.rb.recovery-time"},
    ),
    _planted(
        DIES_ON_CORRUPTED_CERTIFICATE,
        "An OpenSecureChannel whose SenderCertificate is not a parsable certificate kills the OPC UA "
        "service: no ERR, and every connection is closed before any answer until it is restarted.",
        {"opcua.ts.client-cert-corrupted"},
    ),
    # RB-2: UA TCP framing answered with ERR and a close (simulators/opcua/uatcp_guard.py)
    _planted(
        SILENT_ON_MALFORMED_MESSAGE,
        "Closes the connection without an ERR message on malformed UA TCP framing (unknown message "
        "type, MSG before HEL, a second HEL, small HEL buffers, MessageSize beyond the receive buffer, "
        "more chunks than MaxChunkCount).",
        {"opcua.rb.malformed-hello", "opcua.rb.malformed-chunks", "opcua.rb.chunk-count-limit"},
    ),
    _planted(
        ACCEPTS_SMALL_BUFFERS,
        "Acknowledges a HEL whose ReceiveBufferSize or SendBufferSize is below 8192 bytes (asyncua's own "
        "behaviour).",
        {"opcua.rb.malformed-hello"},
    ),
    _planted(
        NO_CHUNK_COUNT_LIMIT,
        "Announces MaxChunkCount in its ACK but counts no chunks: a request of more chunks is assembled and "
        "processed instead of refused with ERR.",
        {"opcua.rb.chunk-count-limit"},
    ),
)
PLANTED_BUGS = frozenset(d.name for d in PLANTED_DEFECTS)


class PlantedBugs:
    """Shared by every connection of one server (the wedge is server-wide)."""

    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects & PLANTED_BUGS
        self.wedged = False
        self.dead = False  # the OPC UA service died (dies-on-corrupted-client-cert)
        self._locked_until = 0.0

    def swallow(self, protocol: Any, data: bytes) -> bool:
        """True when the bytes must vanish instead of reaching asyncua's parser."""
        if self.dead:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.close()
            return True
        if self.wedged:
            return True
        if time.monotonic() < self._locked_until:
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

    def certificate_unparsable(self) -> bool:
        """An OPN carried bytes that are no certificate: True when the planted bug dies of it."""
        if DIES_ON_CORRUPTED_CERTIFICATE not in self.defects:
            return False
        _log.warning("planted bug: a corrupted client certificate kills the OPC UA service")
        self.dead = True
        return True

    def framing_refused(self, protocol: Any) -> None:
        """The UA TCP guard refused a connection's framing (the overload lockout's trigger)."""
        open_now = len(getattr(protocol, "clients", ()))
        if OVERLOAD_LOCKOUT in self.defects and open_now > OVERLOAD_CONNECTIONS:
            if time.monotonic() >= self._locked_until:
                _log.warning("planted bug: malformed framing with %d connections open: locking out", open_now)
            self._locked_until = time.monotonic() + LOCKOUT_S
