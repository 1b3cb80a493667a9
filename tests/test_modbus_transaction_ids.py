"""A late answer is never taken for the next request's (issue 17, item 3).

A real server on 127.0.0.1 answers the first read only after the client's timeout, then the
second at once: the second request must get its own answer, matched by transaction id.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from protocols.modbus.frames import RegistersResponse
from protocols.modbus.raw_client import Outcome, open_raw


async def test_a_late_answer_is_skipped_not_taken_for_the_next_one() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            first = await reader.readexactly(12)
            second = await reader.readexactly(12)  # sent after the client gave up on the first
            for request, value in ((first, 1111), (second, 2222)):
                writer.write(
                    request[:4] + struct.pack(">HB", 5, request[6]) + struct.pack(">BBH", 3, 2, value)
                )
            await writer.drain()
            await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, open_raw("127.0.0.1", port, timeout=0.5) as connection:
        first = await connection.request(struct.pack(">BHH", 3, 0, 1))
        second = await connection.request(struct.pack(">BHH", 3, 0, 1))
    assert first.outcome == Outcome.NO_ANSWER
    assert second.outcome == Outcome.ANSWERED, second
    assert isinstance(second.response, RegistersResponse) and second.response.values == (2222,)
    assert "1 late answer(s) to earlier requests skipped" in second.detail
