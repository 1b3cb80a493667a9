"""Planted bugs: robustness defects of the Modbus simulator that the fuzzer and RB suite must find.

Each is a real behaviour change of the server process, of the kind field devices have:
- crash-on-oversized-length: an MBAP length beyond the ADU limit (254) kills the process
  (a fixed 260-byte receive buffer overrun, modelled as an abort);
- crash-on-address-wrap: a read whose address + quantity passes 0xFFFF kills the process
  (the end address computed in 16 bits);
- serial-connections: one connection is served at a time; a client that sends half a frame
  and waits keeps every other client waiting;
- overload-lockout: more than OVERLOAD_CONNECTIONS connections at once make the server stop
  answering anyone for LOCKOUT_S (an overload guard that over-reacts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator

from protocols.modbus.frames import MAX_PDU_SIZE, MODBUS_PROTOCOL_ID, FunctionCode, MbapHeader

_log = logging.getLogger("simulators.modbus")

CRASH_ON_OVERSIZED_LENGTH = "crash-on-oversized-length"
CRASH_ON_ADDRESS_WRAP = "crash-on-address-wrap"
SERIAL_CONNECTIONS = "serial-connections"
OVERLOAD_LOCKOUT = "overload-lockout"

CRASH_EXIT_CODE = 70
OVERLOAD_CONNECTIONS = 8
LOCKOUT_S = 6.0


def _crash(why: str) -> None:
    print(f"simulators.modbus: planted bug: {why}: aborting", file=sys.stderr, flush=True)
    os._exit(CRASH_EXIT_CODE)


class PlantedBugs:
    def __init__(self, defects: frozenset[str]) -> None:
        self.defects = defects
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
