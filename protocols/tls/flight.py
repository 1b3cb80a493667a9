"""The server's first flight, read from the plaintext TLS records by hand.

A suite scan reads hundreds of first flights. scapy's TLS layer dissects each one whole (a
DHE ServerKeyExchange costs it half a second of CPU: it builds the group), where kentei needs
five facts: the ServerHello's version and suite, an alert, a CertificateRequest, and whether
the flight is over. Everything after the first ChangeCipherSpec or encrypted record is opaque
and not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22

SERVER_HELLO = 2
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14

SUPPORTED_VERSIONS = 43
MAX_RECORDS = 256  # a first flight has a handful; the bound keeps a hostile stream cheap


@dataclass(frozen=True)
class Flight:
    server_hello: bytes | None  # the whole handshake message (4-byte header included)
    alert: tuple[int, int] | None  # (level, description) of the first plaintext alert
    certificate_requested: bool
    hello_done: bool  # ServerHelloDone seen: a TLS <= 1.2 server has said all it will say
    encrypted_after_hello: bool  # a ChangeCipherSpec or an encrypted record followed (TLS 1.3)

    @property
    def cipher(self) -> int | None:
        return None if self.server_hello is None else server_hello_cipher(self.server_hello)

    @property
    def version(self) -> int | None:
        return None if self.server_hello is None else server_hello_version(self.server_hello)


def read_flight(data: bytes) -> Flight:
    """What the plaintext records in `data` say; a truncated tail is simply not read yet."""
    handshake = bytearray()
    alert: tuple[int, int] | None = None
    encrypted = False
    pos = 0
    for _ in range(MAX_RECORDS):
        if pos + 5 > len(data):
            break
        kind, length = data[pos], struct.unpack(">H", data[pos + 3 : pos + 5])[0]
        fragment = data[pos + 5 : pos + 5 + length]
        if len(fragment) < length:
            break
        pos += 5 + length
        if kind == HANDSHAKE:
            handshake += fragment
        elif kind == ALERT and len(fragment) >= 2 and alert is None:
            alert = (fragment[0], fragment[1])
        else:  # ChangeCipherSpec, application data (TLS 1.3's encrypted handshake) or garbage
            encrypted = encrypted or kind == CHANGE_CIPHER_SPEC or kind == 23
            break
    messages = _handshake_messages(bytes(handshake))
    hello = next((m for m in messages if m[0] == SERVER_HELLO), None)
    return Flight(
        server_hello=hello,
        alert=alert,
        certificate_requested=any(m[0] == CERTIFICATE_REQUEST for m in messages),
        hello_done=any(m[0] == SERVER_HELLO_DONE for m in messages),
        encrypted_after_hello=hello is not None and encrypted,
    )


def _handshake_messages(stream: bytes) -> list[bytes]:
    messages = []
    pos = 0
    for _ in range(MAX_RECORDS):
        if pos + 4 > len(stream):
            break
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        if pos + 4 + length > len(stream):
            break
        messages.append(stream[pos : pos + 4 + length])
        pos += 4 + length
    return messages


def server_hello_cipher(message: bytes) -> int | None:
    """The suite a ServerHello (or a TLS 1.3 HelloRetryRequest, which picks one too) selects."""
    try:
        pos = 4 + 2 + 32
        pos += 1 + message[pos]  # session id
        return int(struct.unpack(">H", message[pos : pos + 2])[0])
    except (IndexError, struct.error):
        return None


def server_hello_version(message: bytes) -> int | None:
    """The version a ServerHello selects (supported_versions for TLS 1.3)."""
    try:
        legacy = struct.unpack(">H", message[4:6])[0]
        pos = 4 + 2 + 32
        session_len = message[pos]
        pos += 1 + session_len + 2 + 1  # session id, cipher, compression
        if pos + 2 > len(message):
            return int(legacy)
        ext_end = pos + 2 + struct.unpack(">H", message[pos : pos + 2])[0]
        pos += 2
        for _ in range(64):
            if pos + 4 > ext_end:
                break
            ext_type, ext_len = struct.unpack(">HH", message[pos : pos + 4])
            if ext_type == SUPPORTED_VERSIONS and ext_len == 2:
                return int(struct.unpack(">H", message[pos + 4 : pos + 6])[0])
            pos += 4 + ext_len
        return int(legacy)
    except (IndexError, struct.error):
        return None
