"""Devices that answer, but not in the protocol asked: garbage, an HTTP server, an SSH banner."""

from __future__ import annotations

import asyncio
import random

GARBAGE_BYTES = 4096
MAX_ANSWERS = 100  # per connection


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every read with random bytes (seeded: a failure replays)."""
    noise = random.Random(17)
    for _ in range(MAX_ANSWERS):
        if not await reader.read(65536):
            return
        writer.write(noise.randbytes(GARBAGE_BYTES))
        await writer.drain()


HTTP_BODY = b"<html><body><h1>400 Bad Request</h1></body></html>\r\n"
HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\n"
    + f"Content-Length: {len(HTTP_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + HTTP_BODY
)


async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What a web server says to bytes that are not HTTP: a 400, then close."""
    await reader.read(65536)
    writer.write(HTTP_ANSWER)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


async def ssh_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SSH server speaks first; to anything that is not an SSH banner it says so and closes."""
    writer.write(SSH_BANNER)
    await writer.drain()
    await reader.read(65536)
    writer.write(b"Invalid SSH identification string.\r\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
