"""Positive controls: a read the DUT answers correctly, before any refusal of it is judged.

A refusal (an exception, a TLS alert, a close) only says something about the device when the
same path serves a valid request right before: otherwise a device that answers nothing, or
resets every connection, would look like one that refuses. The valid read comes from the
DUT's declared register map; without one, kentei tries address 0 of each table and takes the
first read answered correctly (a guess that is never judged, only used as the control).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.modbus.frames import BitsResponse, RegistersResponse, read_registers_pdu
from protocols.modbus.raw_client import Exchange, Outcome, RawModbusConnection
from protocols.modbus.register_map import READ_FUNCTION, RegisterMap, Table

# The order a read is looked for: registers first (what every CNC controller has).
_TABLES = (Table.HOLDING, Table.INPUT, Table.COIL, Table.DISCRETE)


@dataclass(frozen=True)
class ReadProbe:
    table: Table
    address: int
    quantity: int = 1

    @property
    def function(self) -> int:
        return READ_FUNCTION[self.table]

    @property
    def pdu(self) -> bytes:
        return read_registers_pdu(self.function, self.address, self.quantity)

    def describe(self) -> str:
        return f"FC{self.function:02d} at {self.address} x{self.quantity}"


@dataclass(frozen=True)
class ControlRead:
    """The outcome of looking for a correctly answered read on one connection."""

    probe: ReadProbe | None  # the read that was answered correctly, None if none was
    tried: tuple[str, ...]  # each read tried and what came back

    @property
    def ok(self) -> bool:
        return self.probe is not None

    def describe(self) -> str:
        if self.probe is not None:
            return f"control read {self.probe.describe()} answered correctly"
        return "no read answered correctly (" + "; ".join(self.tried) + ")"


def candidate_reads(register_map: RegisterMap | None) -> tuple[ReadProbe, ...]:
    """The reads to try, best first: the first address of each declared area, else address 0."""
    if register_map is not None:
        return tuple(
            ReadProbe(area.table, area.start) for table in _TABLES for area in register_map.areas_of(table)
        )[:4]
    return tuple(ReadProbe(table, 0) for table in _TABLES)


def answered_correctly(probe: ReadProbe, exchange: Exchange) -> bool:
    """A normal answer to `probe`: same transaction id, same function, the quantity asked for."""
    if exchange.outcome != Outcome.ANSWERED or exchange.answer[:2] != exchange.sent[:2]:
        return False
    response = exchange.response
    if isinstance(response, RegistersResponse):
        return response.function == probe.function and len(response.values) == probe.quantity
    if isinstance(response, BitsResponse):
        return response.function == probe.function and len(response.packed) == (probe.quantity + 7) // 8
    return False


def describe_exchange(exchange: Exchange) -> str:
    if exchange.outcome == Outcome.ANSWERED:
        return f"answered {exchange.answer[7:].hex()}"
    return f"{exchange.outcome.value}" + (f" ({exchange.detail})" if exchange.detail else "")


async def control_read(
    connection: RawModbusConnection, register_map: RegisterMap | None, unit_id: int
) -> ControlRead:
    """Try the candidate reads on `connection` until one is answered correctly.

    Stops at the first read that gets no answer or a closed connection: the connection is
    then of no more use.
    """
    tried: list[str] = []
    for probe in candidate_reads(register_map):
        exchange = await connection.request(probe.pdu, unit_id=unit_id)
        tried.append(f"{probe.describe()}: {describe_exchange(exchange)}")
        if answered_correctly(probe, exchange):
            return ControlRead(probe, tuple(tried))
        if exchange.outcome != Outcome.ANSWERED:
            break
    return ControlRead(None, tuple(tried))
