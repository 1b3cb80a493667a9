"""A recording TCP relay: how kentei captures a test's traffic without capture privileges.

For the duration of one test, each DUT interface is reached through a relay on
127.0.0.1 that forwards bytes both ways unchanged and records them with their times.
Every client kentei uses (asyncua, pymodbus, raw frames, blocking ssl sockets in the
TLS prober) goes through it, and TLS is recorded as the records on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass, field

from harness.evidence.pcap import Segment, TcpStream

CHUNK = 65536


@dataclass
class Recording:
    """Every stream through a relay, bounded in bytes (the relay keeps forwarding after).

    Besides the bytes it keeps what the runner needs to tell a refusal from a dead DUT: the
    connections the DUT itself refused or never answered (the relay had already accepted
    them on its side, so the client saw only a reset), and the connections the DUT closed
    after a request without a byte of answer.
    """

    max_bytes: int
    streams: list[TcpStream] = field(default_factory=list)
    recorded_bytes: int = 0
    truncated: bool = False
    upstream_failures: list[str] = field(default_factory=list)
    unanswered_streams: int = 0

    def add(self, stream: TcpStream, from_client: bool, data: bytes) -> None:
        if self.recorded_bytes + len(data) > self.max_bytes:
            self.truncated = True
            return
        self.recorded_bytes += len(data)
        stream.segments.append(Segment(time.time(), from_client, data))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, the closest a relay can come to the DUT refusing the connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@dataclass(frozen=True)
class _AcceptedThenReset:
    """The DUT's reset arrived before the relay's connect was seen to complete."""

    local: tuple[str, int]


async def _dial(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | _AcceptedThenReset:
    """Connect to the DUT on a socket of the relay's own, so that a connection the DUT accepts
    and resets at once still has the local address its evidence needs."""
    loop = asyncio.get_running_loop()
    last: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except ConnectionResetError:
            local = sock.getsockname()
            sock.close()
            return _AcceptedThenReset((local[0], local[1]))
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            last = exc
            continue
        return await asyncio.open_connection(sock=sock)
    raise last


class CaptureRelay:
    """Listen on 127.0.0.1:<ephemeral>, forward every connection to (host, port), record it."""

    def __init__(self, host: str, port: int, recording: Recording, connect_timeout: float) -> None:
        self.upstream = (host, port)
        self.recording = recording
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(client_reader, client_writer)
        except asyncio.CancelledError:
            # close() cancels open relays; asyncio's stream callback must not see that as an error.
            client_writer.close()
        finally:
            self._tasks.discard(task)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                dialled = await _dial(*self.upstream)
        except (OSError, TimeoutError) as exc:
            # The client's connection was accepted here before the DUT was asked: record that the
            # DUT refused it, so the reset the client sees is never judged as the DUT's refusal.
            why = "no TCP answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            self.recording.upstream_failures.append(f"{self.upstream[0]}:{self.upstream[1]}: {why}")
            _reset(client_writer)
            return
        if isinstance(dialled, _AcceptedThenReset):
            # The DUT completed the handshake and reset before the relay saw the connect finish
            # (a loaded loop): a refusal for the DUT watch, and a stream of evidence all the same.
            now = time.time()
            self.recording.streams.append(
                TcpStream(dialled.local, self.upstream, opened_at=now, closed_at=now, reset_by_server=True)
            )
            self.recording.upstream_failures.append(
                f"{self.upstream[0]}:{self.upstream[1]}: accepted, then reset at once"
            )
            _reset(client_writer)
            return
        server_reader, server_writer = dialled
        # A DUT that resets right after accepting leaves a socket without a peer name: the stream
        # is still evidence (its pcap shows the reset), named by the address the relay dialled.
        local = server_writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        peer = server_writer.get_extra_info("peername") or self.upstream
        stream = TcpStream(client=(local[0], local[1]), server=(peer[0], peer[1]), opened_at=time.time())
        self.recording.streams.append(stream)
        try:
            sent, answered = await asyncio.gather(
                self._pipe(client_reader, server_writer, stream, from_client=True),
                self._pipe(server_reader, client_writer, stream, from_client=False),
            )
            if sent and not answered:
                self.recording.unanswered_streams += 1
        finally:
            stream.closed_at = time.time()
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: TcpStream,
        *,
        from_client: bool,
    ) -> int:
        """Forward until EOF or a reset; the number of bytes forwarded."""
        forwarded = 0
        try:
            while data := await reader.read(CHUNK):
                forwarded += len(data)
                self.recording.add(stream, from_client, data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # pass a half-close on, as the peer would have seen it
        except (ConnectionError, OSError):
            # One side reset: reset the other, so each end sees what it would have seen.
            if not from_client:
                stream.reset_by_server = True
            _reset(writer)
        return forwarded
