"""Devices that give the same refusal to every request: an OPC UA ERR, a Modbus exception."""

from __future__ import annotations

import asyncio

from tests.hostile import ua_frames
from tests.hostile.modbus_device import MAX_REQUESTS_PER_CONNECTION, frame, read_request
from tests.hostile.server import Handler

MODBUS_EXCEPTIONS = (0x01, 0x02, 0x03, 0x04)


def opcua_err(status: str) -> Handler:
    """ERR `status` to the first message (HEL, OPN, anything), then close (Part 6 7.1.5)."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(ua_frames.err(status, f"{status} to every request"))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    return refuse


def modbus_exception(code: int) -> Handler:
    """Exception `code` to every request, whatever the function, address or quantity."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            request = await read_request(reader)
            if request is None:
                return
            transaction, unit, pdu = request
            function = pdu[0] if pdu else 0
            writer.write(frame(transaction, unit, bytes([(function | 0x80) & 0xFF, code])))
            await writer.drain()

    return refuse
