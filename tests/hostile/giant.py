"""Devices whose answers never end: an ACK that promises 4 GiB and a message that claims it,
an MBAP header that claims 0xFFFF bytes followed by 100 MB."""

from __future__ import annotations

import asyncio
import struct

from tests.hostile import ua_frames
from tests.hostile.modbus_device import read_request

ENDLESS_BYTES = 100 * 1024 * 1024  # the stream stops here (or when the client goes away)
BLOCK = b"\x00" * 65536


async def _pour(writer: asyncio.StreamWriter, total: int) -> None:
    for _ in range(total // len(BLOCK)):
        writer.write(BLOCK)
        await writer.drain()


async def opcua_endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """ACK with 4 GiB buffers and no message or chunk limit, then to the next message a chunk
    header with MessageSize 0xFFFFFFFF and 100 MB of it."""
    await ua_frames.read_message(reader)  # HEL
    writer.write(ua_frames.ack(buffer_size=0xFFFFFFFF, max_message=0, max_chunks=0))
    await writer.drain()
    message_type, _ = await ua_frames.read_message(reader)
    writer.write(message_type + b"F" + struct.pack("<I", 0xFFFFFFFF))
    await _pour(writer, ENDLESS_BYTES)


async def modbus_endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """To the first request: its MBAP header with length 0xFFFF, then 100 MB."""
    request = await read_request(reader)
    transaction = 0 if request is None else request[0]
    unit = 1 if request is None else request[1]
    writer.write(struct.pack(">HHHB", transaction, 0, 0xFFFF, unit))
    await _pour(writer, ENDLESS_BYTES)
