"""Planted bugs: robustness defects of the Modbus simulator that the fuzzer and RB suite must find.

Each is a real behaviour change of the server process, of the kind field devices have:
- crash-on-oversized-length: an MBAP length beyond the ADU limit (254) kills the process
  (a fixed 260-byte receive buffer overrun, modelled as an abort);
- crash-on-address-wrap: a read whose address + quantity passes 0xFFFF kills the process
  (the end address computed in 16 bits);
- serial-connections: one connection is served at a time; a client that sends half a frame
  and waits keeps every other client waiting;
- overload-lockout: more than OVERLOAD_CONNECTIONS connections at once make the server stop
  answering anyone for LOCKOUT_S (an overload guard that over-reacts);
- hang-connection-on-swapped-quantity: a register read whose quantity is 125 byte-swapped
  (0x7D00) leaves that connection's parser out of step: the server reads and drops every byte
  that follows on it, answering nothing, until the client closes; new connections are served
  as before (found only by the per-connection oracle, never by a fresh-connection probe);
- crash-on-oversized-tls-record: the TLS endpoint peeks at the first record header before
  handing the socket to ssl, to size a fixed record buffer of 5 + 2^14 + 2048 bytes (the
  largest TLSCiphertext); a length field beyond it kills the process (the overrun, modelled
  as an abort), whatever body follows;
- hangs-on-corrupted-client-cert: the TLS endpoint reads the client's TLS 1.2 Certificate message
  itself before ssl does, and a certificate that does not parse stalls that connection
  (simulators/modbus/certificate_tap.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator

from protocols.modbus.frames import MAX_PDU_SIZE, MODBUS_PROTOCOL_ID, FunctionCode, MbapHeader
from simulators.defects import Defect, defect
from simulators.modbus.behaviour import Behaviour

_log = logging.getLogger("simulators.modbus")

CRASH_ON_OVERSIZED_LENGTH = "crash-on-oversized-length"
CRASH_ON_ADDRESS_WRAP = "crash-on-address-wrap"
SERIAL_CONNECTIONS = "serial-connections"
OVERLOAD_LOCKOUT = "overload-lockout"
CRASH_ON_OVERSIZED_TLS_RECORD = "crash-on-oversized-tls-record"
HANG_CONNECTION_ON_SWAPPED_QUANTITY = "hang-connection-on-swapped-quantity"
HANGS_ON_CORRUPTED_CLIENT_CERT = "hangs-on-corrupted-client-cert"
SWAPPED_QUANTITY = 0x7D00  # 125 (the read limit) with its bytes swapped


def _planted(name: str, description: str, breaks: str, may_affect: frozenset[str] = frozenset()) -> Defect:
    def change(b: Behaviour) -> Behaviour:
        return dataclasses.replace(b, planted=b.planted | {name})

    return defect(name, "modbus", description, breaks={breaks}, may_affect=may_affect, change=change)


PLANTED_DEFECTS: tuple[Defect, ...] = (
    _planted(
        CRASH_ON_OVERSIZED_LENGTH,
        "an MBAP length beyond the ADU limit (> 254) aborts the server process",
        "modbus.rb.fuzz-mbap",
        may_affect=frozenset({"modbus.kb.oversize-adu"}),  # sends MBAP lengths 255..258
    ),
    _planted(
        CRASH_ON_ADDRESS_WRAP,
        "a read whose address + quantity passes 0xFFFF aborts the server process",
        "modbus.rb.fuzz-pdu",
        # RB-2 illegal-address sends such a read on every map (0xFFFF + 2): the process dies there,
        # and the RB tests after it find it dead (inconclusive, never pass).
        may_affect=frozenset({"modbus.rb.*"}),
    ),
    _planted(
        CRASH_ON_OVERSIZED_TLS_RECORD,
        "a TLS record whose length field exceeds 2^14 + 2048 aborts the server process "
        "(the first record is peeked into a fixed buffer before ssl reads it)",
        "modbus.rb.fuzz-tls-records",
    ),
    _planted(
        HANG_CONNECTION_ON_SWAPPED_QUANTITY,
        "a register read of quantity 0x7D00 (125 byte-swapped) makes the server drop everything after it "
        "on that connection, never answering again; new connections are served",
        "modbus.rb.fuzz-pdu",
    ),
    _planted(
        HANGS_ON_CORRUPTED_CLIENT_CERT,
        "the TLS endpoint reads the client's TLS 1.2 Certificate message before ssl does "
        "(certificate_tap.py); a certificate that does not parse stalls that connection, open and silent; "
        "others are served",
        "modbus.ts.client-cert-corrupted",
    ),
    _planted(
        SERIAL_CONNECTIONS,
        "one connection is served at a time: a client stalled mid-frame blocks all others",
        "modbus.rb.slow-sender",
    ),
    _planted(
        OVERLOAD_LOCKOUT,
        "more than 8 connections at once make the server ignore every request for 6 s",
        "modbus.rb.recovery-time",
    ),
)

CRASH_EXIT_CODE = 70
OVERLOAD_CONNECTIONS = 8
LOCKOUT_S = 6.0
TLS_RECORD_HEADER = 5
TLS_RECORD_BUFFER = (1 << 14) + 2048  # RFC 5246 6.2.3: the largest TLSCiphertext.fragment
PEEK_WITHIN_S = 0.5  # how long the peek waits for a whole record header before ssl takes over
PEEK_POLL_S = 0.005


def _crash(why: str) -> None:
    print(f"simulators.modbus: planted bug: {why}: aborting", file=sys.stderr, flush=True)
    os._exit(CRASH_EXIT_CODE)


class PlantedBugs:
    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects  # the planted bugs chosen (Behaviour.planted)
        self._serial = asyncio.Lock()
        self._open = 0
        self._locked_until = 0.0

    def check_header(self, header: MbapHeader) -> None:
        if (
            CRASH_ON_OVERSIZED_LENGTH in self.defects
            and header.protocol_id == MODBUS_PROTOCOL_ID
            and header.length > MAX_PDU_SIZE + 1
        ):
            _crash(f"MBAP length {header.length}")

    def check_pdu(self, pdu: bytes) -> None:
        reads = (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS)
        if CRASH_ON_ADDRESS_WRAP in self.defects and len(pdu) == 5 and pdu[0] in reads:
            address, quantity = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
            if address + quantity > 0xFFFF:
                _crash(f"read of {quantity} registers at {address:#06x}")

    def stalls_connection(self, pdu: bytes) -> bool:
        """True if this request leaves the connection's parser out of step (the planted connection hang)."""
        reads = (FunctionCode.READ_HOLDING_REGISTERS, FunctionCode.READ_INPUT_REGISTERS)
        return (
            HANG_CONNECTION_ON_SWAPPED_QUANTITY in self.defects
            and len(pdu) == 5
            and pdu[0] in reads
            and int.from_bytes(pdu[3:5], "big") == SWAPPED_QUANTITY
        )

    @property
    def taps_client_certificates(self) -> bool:
        """True if the TLS endpoint reads the client's certificate before ssl does (certificate_tap.py)."""
        return HANGS_ON_CORRUPTED_CLIENT_CERT in self.defects

    @property
    def peeks_tls_records(self) -> bool:
        """True if the TLS endpoint looks at the first record itself before ssl reads it."""
        return CRASH_ON_OVERSIZED_TLS_RECORD in self.defects

    def check_tls_record(self, header: bytes) -> None:
        if CRASH_ON_OVERSIZED_TLS_RECORD in self.defects and len(header) >= TLS_RECORD_HEADER:
            length = int.from_bytes(header[3:5], "big")
            if length > TLS_RECORD_BUFFER:
                _crash(f"TLS record length {length} (type {header[0]}, version {header[1:3].hex()})")

    @property
    def silenced(self) -> bool:
        """True while the overload lockout keeps the server from answering."""
        return time.monotonic() < self._locked_until

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        self._open += 1
        try:
            if OVERLOAD_LOCKOUT in self.defects and self._open > OVERLOAD_CONNECTIONS:
                if not self.silenced:
                    _log.warning("planted bug: %d connections: locking everyone out", self._open)
                self._locked_until = time.monotonic() + LOCKOUT_S
            if SERIAL_CONNECTIONS in self.defects:
                async with self._serial:
                    yield
            else:
                yield
        finally:
            self._open -= 1


async def drop_until_closed(reader: asyncio.StreamReader, idle_timeout: float, max_reads: int) -> None:
    """Read and drop what the client sends until it closes, falls idle or `max_reads` reads passed."""
    _log.warning("planted bug: a connection's parser is out of step: dropping what it sends")
    for _ in range(max_reads):
        if not await asyncio.wait_for(reader.read(4096), idle_timeout):
            return


async def peek_first_record_header(writer: asyncio.StreamWriter) -> bytes:
    """Up to 5 bytes the client sent first, left in the socket for ssl to read (MSG_PEEK).

    The transport must not be reading (paused before the event loop could read): ssl gets
    the socket afterwards with every byte still in it. Bounded by PEEK_WITHIN_S; fewer than
    5 bytes when the client sent less, or nothing, in that time.
    """
    raw = writer.get_extra_info("socket")
    if raw is None:
        return b""
    seen = b""
    deadline = time.monotonic() + PEEK_WITHIN_S
    with raw.dup() as sock:  # a real socket object on the same connection; closing it closes only the dup
        while True:
            try:
                seen = bytes(sock.recv(TLS_RECORD_HEADER, socket.MSG_PEEK | socket.MSG_DONTWAIT))
                if len(seen) >= TLS_RECORD_HEADER or not seen:  # a whole header, or the client closed
                    return seen
            except BlockingIOError:
                pass
            except OSError:
                return seen
            if time.monotonic() >= deadline:
                return seen
            await asyncio.sleep(PEEK_POLL_S)
