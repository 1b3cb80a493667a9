"""The planted bug hangs-on-corrupted-client-cert: a TLS endpoint that reads the client's certificate
itself, before ssl does, and stalls on one it cannot parse.

Devices do this to log or route by the client's name before the TLS library has judged it. Here the
client's bytes pass through a tap on their way to ssl (a socket pair: ssl serves one end, the tap
pumps the client's connection to the other). The tap reads the plaintext TLS 1.2 handshake records;
when the client's Certificate message holds a certificate that does not parse, it stops forwarding:
the connection stays open and silent, ssl never sees the message, and the client waits for an answer
that never comes. Other connections are served as before. TLS 1.3 encrypts the client's Certificate,
so the tap sees nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator

from cryptography import x509

from protocols.tls.certificate_flight import CERTIFICATE
from protocols.tls.flight import HANDSHAKE

_log = logging.getLogger("simulators.modbus")

_CHUNK = 65536
_MAX_HANDSHAKE_BYTES = 256 * 1024  # what the tap keeps of the client's handshake before giving up on it


class ClientHandshakeReader:
    """Reads the client's plaintext TLS records as they come; True from `feed` on a bad certificate."""

    def __init__(self) -> None:
        self._records = b""
        self._handshake = b""
        self._done = False  # a ChangeCipherSpec, TLS 1.3 or too much: nothing more to read in clear

    def feed(self, data: bytes) -> bool:
        if self._done:
            return False
        self._records += data
        while len(self._records) >= 5:
            kind, length = self._records[0], int.from_bytes(self._records[3:5], "big")
            if len(self._records) < 5 + length:
                break
            fragment, self._records = self._records[5 : 5 + length], self._records[5 + length :]
            if kind != HANDSHAKE:  # a ChangeCipherSpec (or anything else): nothing more in clear
                self._done = True
                return False
            self._handshake += fragment
            if self._bad_certificate():
                return True
        self._done = len(self._handshake) + len(self._records) > _MAX_HANDSHAKE_BYTES
        return False

    def _bad_certificate(self) -> bool:
        stream = self._handshake
        pos = 0
        while pos + 4 <= len(stream):
            kind, length = stream[pos], int.from_bytes(stream[pos + 1 : pos + 4], "big")
            if pos + 4 + length > len(stream):
                return False
            if kind == CERTIFICATE:
                self._done = True
                return not _certificates_parse(stream[pos + 4 : pos + 4 + length])
            pos += 4 + length
        return False


def _certificates_parse(body: bytes) -> bool:
    """Every certificate of a TLS 1.2 Certificate message body is DER that cryptography can read."""
    pos = 3  # the list's own 3-byte length
    while pos + 3 <= len(body):
        length = int.from_bytes(body[pos : pos + 3], "big")
        try:
            x509.load_der_x509_certificate(body[pos + 3 : pos + 3 + length])
        except ValueError:
            return False
        pos += 3 + length
    return True


@contextlib.asynccontextmanager
async def tapped_tls(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    handshake_timeout: float,
    idle_timeout: float,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """The TLS server side of the client's connection, with the client's bytes through the tap.

    Raises what the handshake raises (ssl.SSLError, ConnectionError, TimeoutError). A stalled
    connection is held open until the client closes it or `idle_timeout` passes."""
    loop = asyncio.get_running_loop()
    served, tapped = socket.socketpair()
    tap_reader, tap_writer = await asyncio.open_connection(sock=tapped)
    stalled = asyncio.Event()

    async def upstream() -> None:  # the client's bytes, read before ssl gets them
        reader = ClientHandshakeReader()
        try:
            while chunk := await client_reader.read(_CHUNK):
                if reader.feed(chunk):
                    _log.warning("planted bug: a client certificate that does not parse: stalling")
                    stalled.set()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(idle_timeout):
                            while await client_reader.read(_CHUNK):
                                pass
                    return
                tap_writer.write(chunk)
                await tap_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            tap_writer.close()

    async def downstream() -> None:  # what ssl sends, back to the client
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await tap_reader.read(_CHUNK):
                client_writer.write(chunk)
                await client_writer.drain()

    pumps = (asyncio.create_task(upstream()), asyncio.create_task(downstream()))
    ssl_writer: asyncio.StreamWriter | None = None
    try:
        reader = asyncio.StreamReader(limit=1024)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol, served, ssl=context, ssl_handshake_timeout=handshake_timeout
        )
        ssl_writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        yield reader, ssl_writer
    finally:
        if ssl_writer is not None:
            ssl_writer.close()  # and with it `served`, which its transport owns
        else:
            served.close()
        if stalled.is_set():
            await pumps[0]  # the hang: the client's connection stays open, and silent, until it gives up
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        tap_writer.close()
