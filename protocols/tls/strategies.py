"""Hypothesis strategies for TLS record framing (RFC 8446 5.1, RFC 5246 6.2).

The base is one valid ClientHello record; one named piece goes to its edge: the record's
content type, version or length (0, beyond 2^14 + 2048, disagreeing with the body), the
handshake message type or its 24-bit length, a truncation, or the ClientHello fragmented
over several records (legal, and a classic parser bug). No handshake is completed.
"""

from __future__ import annotations

import functools
import struct

from hypothesis import strategies as st

from protocols.bursts import Burst, Frame, bursts, edge_or_any

RECORD_HEADER = 5
MAX_PLAINTEXT = 1 << 14
CONTENT_TYPE_EDGES = (0, 20, 21, 23, 24, 0xFF, 0x80)
VERSION_EDGES = (0x0000, 0x0300, 0x0304, 0xFFFF, 0x0202, 0x7F1C)
# The plaintext limit, the TLS 1.3 and TLS 1.2 ciphertext limits (RFC 8446 5.2, RFC 5246 6.2.3) just
# passed, and the 16-bit signed and unsigned edges.
LENGTH_EDGES = (
    0,
    1,
    MAX_PLAINTEXT,
    MAX_PLAINTEXT + 1,
    MAX_PLAINTEXT + 256 + 1,
    MAX_PLAINTEXT + 2048 + 1,
    0x7FFF,
    0x8000,
    0xFFFF,
)
HANDSHAKE_TYPE_EDGES = (0, 2, 11, 20, 0xFF)
CIPHERS = [0xC02F, 0xC030, 0xC02B, 0xC02C, 0x009C, 0x1301, 0x1302]


@functools.cache
def client_hello_record() -> bytes:
    """One ClientHello record (TLS 1.2 offered), built once with scapy."""
    from protocols.tls.hello import TLS12, client_hello

    return client_hello(TLS12, CIPHERS)


def record(content_type: int, version: int, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return struct.pack(">BHH", content_type & 0xFF, version & 0xFFFF, size & 0xFFFF) + body


@st.composite
def record_frames(draw: st.DrawFn) -> Frame:
    base = client_hello_record()
    content_type, version = base[0], struct.unpack(">H", base[1:3])[0]
    body = base[RECORD_HEADER:]
    piece = draw(
        st.sampled_from(
            (
                "valid",
                "record.length",
                "record.content_type",
                "record.version",
                "handshake.type",
                "handshake.length",
                "truncated",
                "fragmented",
            )
        )
    )
    what = piece
    if piece == "record.length":
        length = draw(edge_or_any((*LENGTH_EDGES, len(body) - 1, len(body) + 1), 0, 0xFFFF))
        # The whole ClientHello behind the header, or a cut of it: a length that disagrees with the
        # bytes sent; shrinks to the bare 5-byte header, so a reproducer shows only what mattered.
        sent = len(body) if draw(st.booleans()) else draw(st.integers(0, len(body)))
        return Frame(record(content_type, version, body[:sent], length), f"record.length={length}")
    if piece == "record.content_type":
        content_type = draw(edge_or_any(CONTENT_TYPE_EDGES, 0, 0xFF))
        what = f"record.content_type={content_type}"
    elif piece == "record.version":
        version = draw(edge_or_any(VERSION_EDGES, 0, 0xFFFF))
        what = f"record.version={version:#06x}"
    elif piece == "handshake.type":
        kind = draw(edge_or_any(HANDSHAKE_TYPE_EDGES, 0, 0xFF))
        body, what = bytes([kind]) + body[1:], f"handshake.type={kind}"
    elif piece == "handshake.length":
        true = len(body) - 4
        length = draw(edge_or_any((0, true - 1, true + 1, 0xFFFFFF, MAX_PLAINTEXT + 1), 0, 0xFFFFFF))
        body, what = body[:1] + length.to_bytes(3, "big") + body[4:], f"handshake.length={length}"
    elif piece == "truncated":
        cut = draw(st.integers(1, len(base) - 1))
        return Frame(base[:cut], f"truncated={cut}")
    elif piece == "fragmented":
        size = draw(st.sampled_from((1, 4, 5, 64)))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        return Frame(b"".join(record(content_type, version, p) for p in pieces), f"fragments_of={size}")
    return Frame(record(content_type, version, body), what)


def record_bursts() -> st.SearchStrategy[Burst]:
    return bursts(record_frames(), max_frames=2)


def record_length_edges() -> tuple[Burst, ...]:
    """A bare record header per length edge (a ClientHello's type and version, nothing behind it):
    tried before the random bursts (Hypothesis's explicit phase), so that a device that breaks on
    one length is found whatever the draws do (they shift with the code Hypothesis sees, not only
    with the seed), and the finding is already as small as it gets."""
    base = client_hello_record()
    content_type, version = base[0], struct.unpack(">H", base[1:3])[0]
    return tuple(
        Burst((record(content_type, version, b"", length),), f"record.length={length} (edge, header only)")
        for length in LENGTH_EDGES
    )
