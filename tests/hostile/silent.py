"""Devices that say nothing useful: stall after the accept, reset at the accept, trickle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.hostile.server import Handler, reset

STALL_S = 300.0  # longer than any probe: the device never answers, the server's end cuts it
TRICKLE_MAX_BYTES = 120  # one byte a second for two minutes at most


async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read what comes, never answer."""
    async with asyncio.timeout(STALL_S):
        while await reader.read(65536):
            pass
        await asyncio.sleep(STALL_S)  # half-closed by the client: still say nothing


async def reset_at_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Complete the TCP handshake, then send a RST before reading anything."""
    reset(writer)


def one_byte_per_second(answer_to: Callable[[bytes], bytes]) -> Handler:
    """Read the first request and send the right answer to it, one byte a second."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(65536)
        for byte in answer_to(request)[:TRICKLE_MAX_BYTES]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)
        await stall(reader, writer)

    return trickle
