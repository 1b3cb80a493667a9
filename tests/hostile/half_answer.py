"""Devices that send half an answer and close: half an ACK, half a Modbus answer, half of a
TLS server's first flight (ServerHello .. ServerHelloDone, made by a real OpenSSL server)."""

from __future__ import annotations

import asyncio
import ssl

from tests.hostile import ua_frames
from tests.hostile.modbus_device import answer, frame, read_request
from tests.hostile.server import Handler


async def _half_then_close(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data[: max(1, len(data) // 2)])
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def opcua_half_ack(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await ua_frames.read_message(reader)
    await _half_then_close(writer, ua_frames.ack())


async def modbus_half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await read_request(reader)
    if request is not None:
        transaction, unit, pdu = request
        await _half_then_close(writer, frame(transaction, unit, answer(pdu)))


def tls_half_flight(context: ssl.SSLContext) -> Handler:
    """Feed the ClientHello to an in-memory OpenSSL server and send half of what it answers."""

    async def half_flight(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        flight = b""
        for _ in range(8):  # a ClientHello arrives in a few reads at most
            data = await reader.read(65536)
            if not data:
                return
            incoming.write(data)
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                flight = outgoing.read()
            except ssl.SSLError:
                flight = outgoing.read()  # an alert: half of it is still half an answer
            if flight:
                break
        await _half_then_close(writer, flight)

    return half_flight
