"""UA TCP framing checks asyncua (2.1) skips, answered as OPC UA Part 6 7.1 says: ERR, then close.

asyncua acknowledges a HEL whose buffer sizes are below the 8192 bytes Part 6 7.1.2.3
requires, acknowledges a second HEL, silently drops a chunk of an unknown message type or
one that comes before HEL (keeping the connection open), and waits for the body of a chunk
whose MessageSize exceeds its receive buffer; asyncua counts the chunks of a message only as
its loop takes them from a 500-chunk queue (with a MaxChunkCount above 500, the queue's overflow
closes the connection without ERR first), so the guard counts them as they arrive.
`UaTcpGuard.refuse` sees the bytes before asyncua's parser does
(`secure_server.CncProtocol.data_received`) and answers each of these with an ERR message
carrying a Bad_Tcp* status, then closes the connection (Part 6 7.1.5).

Defects (real behaviour changes, for the RB-2 tests of harness/suites/opcua_protocol.py and
the RB-3 chunk-count test of harness/suites/opcua_floods.py):
- silent-on-malformed-message: the same checks, but the connection is closed without ERR.
- accepts-small-buffers: a HEL with a buffer below 8192 bytes is acknowledged (asyncua's own
  behaviour); the other checks stay.
- no-chunk-count-limit: the ACK still announces MaxChunkCount, but nothing counts chunks: the
  connection's limit is set to 0 after the ACK (`secure_server.CncProcessor.process`), which
  turns off both this guard's count and asyncua's: a message's chunks are buffered past the
  limit (up to MaxMessageSize) without a word, and a complete message is processed.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from protocols.opcua import frames

_log = logging.getLogger("simulators.opcua")

SILENT_ON_MALFORMED_MESSAGE = "silent-on-malformed-message"
ACCEPTS_SMALL_BUFFERS = "accepts-small-buffers"
NO_CHUNK_COUNT_LIMIT = "no-chunk-count-limit"
UATCP_DEFECTS = frozenset({SILENT_ON_MALFORMED_MESSAGE, ACCEPTS_SMALL_BUFFERS, NO_CHUNK_COUNT_LIMIT})

_HEADER_SIZE = frames.HEADER_SIZE
_MIN_BUFFER_SIZE = frames.MIN_BUFFER_SIZE
_DEFAULT_RECV_BUFFER = frames.DEFAULT_BUFFER_SIZE
_FINAL_ONLY = {b"HEL": (b"F",), b"OPN": (b"F",), b"CLO": (b"F",), b"MSG": (b"F", b"C", b"A")}


def error_message(status: str, reason: str) -> bytes:
    """An ERR chunk (Part 6 7.1.2.5): StatusCode and Reason."""
    return frames.ErrorMessage(frames.status_code(status), reason).encode()


class UaTcpGuard:
    """One per connection: whether HEL came, and whether the connection was refused."""

    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects & UATCP_DEFECTS
        self.hello_seen = False
        self.refused = False
        self.chunks_in_message = 0  # MSG chunks of the message being received

    def _problem(self, pending: bytes, receive_limit: int, chunk_limit: int = 0) -> tuple[str, str] | None:
        """The first framing problem in `pending` (which starts at a chunk boundary), or None."""
        offset = 0
        hello_seen = self.hello_seen
        chunks = self.chunks_in_message
        while len(pending) - offset >= _HEADER_SIZE:
            header = frames.ChunkHeader.decode(pending[offset : offset + _HEADER_SIZE])
            message_type, chunk_type, size = header.message_type, header.chunk_type, header.message_size
            problem = _type_problem(message_type, chunk_type, hello_seen)
            if problem is not None:
                return problem
            if size < _HEADER_SIZE:
                return None  # asyncua closes on a malformed header itself
            if size > receive_limit:
                return "BadTcpMessageTooLarge", f"MessageSize {size} over the receive buffer {receive_limit}"
            if len(pending) - offset < size:
                return None  # the rest of this chunk is still to come
            if message_type == b"MSG":
                chunks = chunks + 1 if chunk_type == b"C" else 0
                if chunk_limit and chunks >= chunk_limit:  # the final chunk would be one more
                    return "BadRequestTooLarge", f"more than MaxChunkCount {chunk_limit} chunks in a message"
            if message_type == b"HEL":
                hello_seen = True
                if ACCEPTS_SMALL_BUFFERS not in self.defects:
                    problem = _hello_buffers_problem(pending[offset + _HEADER_SIZE : offset + size])
                    if problem is not None:
                        return problem
            offset += size
        return None

    def refuse(self, protocol: Any, data: bytes) -> bool:
        """True when the connection was refused (ERR written unless a defect, then closed)."""
        if self.refused:
            return True
        pending = bytes(getattr(protocol, "_buffer", b"")) + data
        limits = getattr(protocol, "limits", None)
        receive_limit = int(getattr(limits, "max_recv_buffer", _DEFAULT_RECV_BUFFER)) or _DEFAULT_RECV_BUFFER
        # The MaxChunkCount this connection's ACK announced (asyncua keeps it per processor).
        negotiated = getattr(getattr(protocol, "processor", None), "_limits", limits)
        problem = self._problem(pending, receive_limit, int(getattr(negotiated, "max_chunk_count", 0)))
        if problem is None:
            # Whole chunks asyncua is about to consume: note the HEL and the MSG chunks among them.
            self._note_chunks(pending)
            return False
        status, reason = problem
        self.refused = True
        transport = getattr(protocol, "transport", None)
        _log.warning("UA TCP framing refused: %s (%s)", status, reason)
        if transport is not None:
            if SILENT_ON_MALFORMED_MESSAGE not in self.defects:
                transport.write(error_message(status, reason))
            transport.close()
        return True

    def _note_chunks(self, pending: bytes) -> None:
        offset = 0
        while len(pending) - offset >= _HEADER_SIZE:
            header = frames.ChunkHeader.decode(pending[offset : offset + _HEADER_SIZE])
            size = header.message_size
            if size < _HEADER_SIZE or len(pending) - offset < size:
                return
            if header.message_type == b"HEL":
                self.hello_seen = True
            elif header.message_type == b"MSG":
                continued = header.chunk_type == b"C"
                self.chunks_in_message = self.chunks_in_message + 1 if continued else 0
            offset += size


def _type_problem(message_type: bytes, chunk_type: bytes, hello_seen: bool) -> tuple[str, str] | None:
    """A message or chunk type a server does not accept here (Part 6 7.1.2), or None."""
    if message_type not in _FINAL_ONLY:
        return "BadTcpMessageTypeInvalid", f"message type {message_type!r} not accepted by a server"
    if chunk_type not in _FINAL_ONLY[message_type]:
        return "BadTcpMessageTypeInvalid", f"chunk type {chunk_type!r} invalid for {message_type!r}"
    if not hello_seen and message_type != b"HEL":
        return "BadTcpMessageTypeInvalid", f"{message_type!r} before HEL"
    if hello_seen and message_type == b"HEL":
        return "BadTcpMessageTypeInvalid", "a second HEL on the connection"
    return None


def _hello_buffers_problem(body: bytes) -> tuple[str, str] | None:
    """HEL buffer sizes below the 8192 bytes Part 6 7.1.2.3 requires, or None."""
    if len(body) < 12:
        return None
    receive, send = struct.unpack("<II", body[4:12])
    if min(receive, send) < _MIN_BUFFER_SIZE:
        return "BadTcpInternalError", f"HEL buffer sizes {receive}/{send} below {_MIN_BUFFER_SIZE} bytes"
    return None
