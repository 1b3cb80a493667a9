"""An independent UA TCP probe: HEL messages built byte by byte on a raw socket (OPC UA Part 6 7.1.2),
not with kentei's or asyncua's codec, for the RB-2 and RB-4 facts of the OPC UA corpus.

Each answer is reported as "ACK", "ERR 0x80xx0000 then closed", "ERR 0x80xx0000, kept open",
"closed without ERR" or "no answer".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import Any
from urllib.parse import urlparse

TIMEOUT_S = 3.0
MIN_BUFFER = 8192  # Part 6 7.1.2.3: both buffer sizes at least 8192 bytes
# The Bad_Tcp* codes and BadCommunicationError (Part 6 7.1.5; Part 4 7.38).
BAD_TCP = {
    0x807D0000,  # BadTcpServerTooBusy
    0x807E0000,  # BadTcpMessageTypeInvalid
    0x807F0000,  # BadTcpSecureChannelUnknown
    0x80800000,  # BadTcpMessageTooLarge
    0x80810000,  # BadTcpNotEnoughResources
    0x80820000,  # BadTcpInternalError
    0x80830000,  # BadTcpEndpointUrlInvalid
    0x80050000,  # BadCommunicationError
}


def hello(url: str, receive: int = 65536, send: int = 65536) -> bytes:
    encoded = url.encode()
    body = struct.pack("<IIIII", 0, receive, send, 0, 0) + struct.pack("<i", len(encoded)) + encoded
    return b"HELF" + struct.pack("<I", 8 + len(body)) + body


def _answer(sock: socket.socket) -> tuple[bytes, bytes] | None:
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        if not chunk:
            return None
        header += chunk
    size = struct.unpack("<I", header[4:8])[0] - 8
    body = b""
    while len(body) < min(size, 1 << 16):
        chunk = sock.recv(size - len(body))
        if not chunk:
            break
        body += chunk
    return header[:3], body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def exchange(url: str, message: bytes, hello_first: bool) -> str:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4840), TIMEOUT_S) as sock:
        try:
            if hello_first:
                sock.sendall(hello(url))
                first = _answer(sock)
                if first is None or first[0] != b"ACK":
                    return "the valid HEL was not acknowledged"
            sock.sendall(message)
            answer = _answer(sock)
        except TimeoutError:
            return "no answer"
        except ConnectionError:
            return "closed without ERR"
        if answer is None:
            return "closed without ERR"
        kind, body = answer
        if kind != b"ERR":
            return kind.decode(errors="replace")
        status = struct.unpack("<I", body[:4])[0]
        return f"ERR {status:#010x} then closed" if _closed(sock) else f"ERR {status:#010x}, kept open"


def malformed_hello_facts(url: str) -> dict[str, Any]:
    """Part 6 7.1.2.3: both buffer sizes at least 8192 bytes, and one HEL per connection."""
    answers = {
        "small_receive_buffer": exchange(url, hello(url, receive=1024), False),
        "small_send_buffer": exchange(url, hello(url, send=1024), False),
        "second_hello": exchange(url, hello(url), True),
    }
    return {
        "malformed_hello_acknowledged": any(a == "ACK" for a in answers.values()),
        "malformed_hello_acknowledged_detail": "; ".join(f"{k}: {v}" for k, v in answers.items()),
    }


BURST = 12  # connections opened at once, as RB-4 asks
BAD_CHUNK = b"XYZF" + struct.pack("<I", 16) + bytes(8)  # a message type no server accepts
SERVED_WITHIN_S = 3.0


def burst_recovery_facts(url: str) -> dict[str, Any]:
    """RB-4: twelve connections at once, each sends a chunk of an unknown message type and is closed;
    then a fresh connection's HEL is sent until it is acknowledged, for up to 3 s."""
    parsed = urlparse(url)
    address = (parsed.hostname or "127.0.0.1", parsed.port or 4840)
    burst = []
    for _ in range(BURST):
        try:
            burst.append(socket.create_connection(address, TIMEOUT_S))
        except OSError:
            break
    for sock in burst:
        with contextlib.suppress(OSError):
            sock.sendall(BAD_CHUNK)
        sock.close()
    ended = time.monotonic()
    answer, attempts = "no attempt", 0
    while time.monotonic() - ended < SERVED_WITHIN_S and attempts < 100:
        attempts += 1
        try:
            with socket.create_connection(address, TIMEOUT_S) as sock:
                sock.sendall(hello(url))
                reply = _answer(sock)
                answer = "closed" if reply is None else reply[0].decode(errors="replace")
        except OSError as exc:
            answer = type(exc).__name__
        if answer == "ACK":
            break
        time.sleep(0.05)
    return {
        "served_after_burst": answer == "ACK",
        "served_after_burst_detail": f"{len(burst)} connections; then {answer} after "
        f"{time.monotonic() - ended:.2f} s ({attempts} attempt(s))",
    }


async def malformed_hello_facts_async(url: str) -> dict[str, Any]:
    """The raw UA TCP facts: the malformed HELs, the burst, the known bug framings (one after the other)."""
    return await asyncio.to_thread(
        lambda: malformed_hello_facts(url) | burst_recovery_facts(url) | known_bug_facts(url)
    )


# -- the known bug classes of profiles/bug_classes.toml, framing only (opcua.kb.*) ---------------


def _ua_string(raw: bytes) -> bytes:
    return struct.pack("<i", len(raw)) + raw


NONE_POLICY = b"http://opcfoundation.org/UA/SecurityPolicy#None"
# OpenSecureChannelRequest (Part 4 5.5.2), type id 446, written out: null token, handle 1, Issue,
# SecurityMode None, empty nonce, 60 s lifetime.
OPEN_REQUEST = (
    struct.pack("<BBH", 1, 0, 446)
    + b"\x00\x00"
    + struct.pack("<qII", 0, 1, 0)
    + struct.pack("<i", -1)
    + struct.pack("<I", 0)
    + b"\x00\x00\x00"
    + struct.pack("<III", 0, 0, 1)
    + struct.pack("<i", 0)
    + struct.pack("<I", 60000)
)


def opn(policy: bytes, certificate: bytes, thumbprint: bytes) -> bytes:
    """An OPN chunk with the three asymmetric security header fields given raw (a length that may lie)."""
    body = struct.pack("<I", 0) + policy + certificate + thumbprint + struct.pack("<II", 1, 1) + OPEN_REQUEST
    return b"OPNF" + struct.pack("<I", 8 + len(body)) + body


def known_bug_facts(url: str) -> dict[str, Any]:
    """What the server does with a MSG header of MessageSize 0, an OPN header claiming 0xFFFFFFFF bytes
    and an OPN whose ReceiverCertificateThumbprint length is -5, each after HEL/ACK on its own connection."""
    return {
        "message_size_zero": exchange(url, b"MSGF" + struct.pack("<I", 0) + bytes(24), True),
        "opn_size_4gib": exchange(url, b"OPNF" + struct.pack("<I", 0xFFFFFFFF) + bytes(24), True),
        "opn_thumbprint_length_negative": exchange(
            url, opn(_ua_string(NONE_POLICY), struct.pack("<i", -1), struct.pack("<i", -5)), True
        ),
    }
