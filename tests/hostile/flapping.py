"""Devices whose path flaps: every second connection reset, a restart every 2 s, and a proxy
that resets every second connection in front of a real (bundled) simulator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from tests.hostile.server import Handler, HostileServer, reset

RESTART_EVERY_S = 2.0
DOWN_FOR_S = 0.3  # between a stop and the next start the port refuses connections
PIPE_BLOCK = 65536


def alternate(handler: Handler) -> Handler:
    """Connections 1, 3, 5 ... are served by `handler`; 2, 4, 6 ... are reset at the accept."""
    count = itertools.count(1)

    async def flap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if next(count) % 2 == 0:
            reset(writer)
            return
        await handler(reader, writer)

    return flap


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(PIPE_BLOCK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


def proxy_to(host: str, port: int) -> Handler:
    """A TCP relay to host:port (the simulator behind the flapping proxy)."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            reset(writer)
            return
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.transport.abort()

    return relay


class RestartingServer(HostileServer):
    """`handler` on a fixed port that goes away every RESTART_EVERY_S (connections cut, port
    refused for DOWN_FOR_S) and comes back, like a device in a reboot loop."""

    async def _serve(self, stop: asyncio.Event) -> None:
        server = await self._listen()
        self._ready.set()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESTART_EVERY_S):
                    await stop.wait()
            await self._close(server)
            if stop.is_set():
                return
            await asyncio.sleep(DOWN_FOR_S)
            server = await self._listen(self.port)
            self.restarts += 1
