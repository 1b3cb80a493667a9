"""A plain, well-behaved Modbus/TCP device: what the flapping and TLS hostile servers wrap.

Its framing is written here with struct, not with kentei's codec, so a kentei decoding bug
cannot hide in both ends. It serves the register areas kentei assumes today
(protocols/modbus/register_map.py, issue 11 item 5 is about that assumption): these servers
test transport behaviour, so an RB-2 or AC verdict must not change because of the map.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

from protocols.modbus.register_map import CNC_REGISTER_MAP, Table

MBAP = struct.Struct(">HHHB")
MAX_REQUESTS_PER_CONNECTION = 10_000

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 0x01, 0x02, 0x03
READS = {0x03: Table.HOLDING, 0x04: Table.INPUT}


def exception(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code])


def answer(pdu: bytes) -> bytes:
    """The response PDU a conformant device gives to `pdu` (reads and register writes)."""
    if not pdu:
        return exception(0, ILLEGAL_FUNCTION)
    function = pdu[0]
    if function in READS and len(pdu) == 5:
        address, quantity = struct.unpack(">HH", pdu[1:5])
        if not 1 <= quantity <= 125:
            return exception(function, ILLEGAL_VALUE)
        if CNC_REGISTER_MAP.area_for(READS[function], address, quantity) is None:
            return exception(function, ILLEGAL_ADDRESS)
        return bytes([function, 2 * quantity]) + bytes(2 * quantity)
    if function == 0x06 and len(pdu) == 5:
        address = struct.unpack(">H", pdu[1:3])[0]
        if CNC_REGISTER_MAP.area_for(Table.HOLDING, address) is None:
            return exception(function, ILLEGAL_ADDRESS)
        return pdu
    if function == 0x10 and len(pdu) >= 6:
        address, quantity = struct.unpack(">HH", pdu[1:5])
        if not 1 <= quantity <= 123 or len(pdu) != 6 + 2 * quantity:
            return exception(function, ILLEGAL_VALUE)
        if CNC_REGISTER_MAP.area_for(Table.HOLDING, address, quantity) is None:
            return exception(function, ILLEGAL_ADDRESS)
        return pdu[:5]
    return exception(function, ILLEGAL_FUNCTION)


async def read_request(reader: asyncio.StreamReader) -> tuple[int, int, bytes] | None:
    """(transaction id, unit id, PDU) of the next request, or None when the client is done or
    sent a frame that is not Modbus/TCP (a device closes then)."""
    header = await reader.readexactly(MBAP.size)
    transaction, protocol, length, unit = MBAP.unpack(header)
    if protocol != 0 or not 2 <= length <= 254:
        return None
    return transaction, unit, await reader.readexactly(length - 1)


def frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu


async def serve_modbus(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one connection until the client closes (bounded in count)."""
    await _serve(reader, writer, 0.0)


def serve_modbus_slowly(
    delay: float,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """The same device, answering each request after `delay` s (a busy controller)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(reader, writer, delay)

    return serve


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    for _ in range(MAX_REQUESTS_PER_CONNECTION):
        request = await read_request(reader)
        if request is None:
            return
        transaction, unit, pdu = request
        await asyncio.sleep(delay)
        writer.write(frame(transaction, unit, answer(pdu)))
        await writer.drain()
