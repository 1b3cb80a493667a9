"""The one way a hostile device is served: a listener on 127.0.0.1 in a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 2000  # every loop is bounded: a run never opens this many, a runaway would


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a device that refuses after the accept does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class HostileServer:
    """Serve `handler` on 127.0.0.1 until the `with` block ends; every connection is cut at the end.

    Subclasses that change the listener itself (a device that restarts) override `_serve`.
    """

    def __init__(self, name: str, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.handler = handler
        self.tls = tls
        self.port = 0
        self.connections = 0  # accepted so far (what a test may assert on)
        self.restarts = 0  # times the listener came back (a device in a reboot loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hostile device", daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __enter__(self) -> HostileServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"hostile server {self.name} did not start within {START_TIMEOUT_S:g} s")
        if self._failure is not None:
            raise RuntimeError(f"hostile server {self.name} failed to start") from self._failure
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError(f"hostile server {self.name} did not stop within {STOP_TIMEOUT_S:g} s")

    def __repr__(self) -> str:
        return f"HostileServer({self.name!r}, port={self.port})"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test through __enter__
            self._failure = exc
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._serve(self._stop)

    async def _serve(self, stop: asyncio.Event) -> None:
        server = await self._listen()
        self._ready.set()
        await stop.wait()
        await self._close(server)

    async def _listen(self, port: int = 0) -> asyncio.Server:
        server = await asyncio.start_server(
            self._connected, "127.0.0.1", port or self.port, ssl=self.tls, reuse_address=True
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    async def _close(self, server: asyncio.Server) -> None:
        """Stop listening and cut every connection (a device that goes away)."""
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections > MAX_CONNECTIONS:
            reset(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._writers.add(writer)
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away: a device does not care
        except asyncio.CancelledError:
            pass  # the server is stopping (_close): asyncio would log a cancelled handler as an error
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()
