"""Hypothesis strategies for OPC UA binary framing: chunk headers, HEL and OPN fields, chunk counts.

Each frame is a valid HEL (or HEL then OPN, or a MSG/CLO) with one named piece pushed to its
edge: a MessageSize that disagrees with the bytes sent, an unknown message or chunk type,
HEL buffer sizes below the 8192 minimum or at the UInt32 limit, a protocol version the
server does not know, an endpoint URL past 4096 bytes, an OPN for a channel id that does
not exist, intermediate chunks without a final one. Shrinking goes to "valid" first.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from protocols.bursts import Burst, Frame, bursts, edge_or_any
from protocols.opcua.frames import (
    HEADER_SIZE,
    MIN_BUFFER_SIZE,
    ChunkHeader,
    Hello,
    open_secure_channel,
    symmetric_chunk,
)

U32 = 0xFFFFFFFF
SIZE_EDGES_ABSOLUTE = (0, 1, 7, HEADER_SIZE, U32, 0x7FFFFFFF, 0x10000, 0x1000000)
BUFFER_EDGES = (0, 1, MIN_BUFFER_SIZE - 1, MIN_BUFFER_SIZE, U32, 0x7FFFFFFF)
VERSION_EDGES = (1, U32, 0x7FFFFFFF)
UNKNOWN_TYPES = (b"XYZ", b"\0\0\0", b"ACK", b"ERR", b"RHE", b"hel", b"\xff\xff\xff")
CHUNK_TYPE_EDGES = (b"C", b"A", b"X", b"\0", b"\xff")
URL_LENGTH_EDGES = (4096, 4097, 0, 10_000)


def _with_size(frame: bytes, size: int) -> bytes:
    return frame[:4] + struct.pack("<I", size & U32) + frame[8:]


@st.composite
def chunk_header_frames(draw: st.DrawFn, endpoint_url: str) -> Frame:
    """A valid HEL whose chunk header has one piece at its edge, or is cut short."""
    frame = Hello(endpoint_url).encode()
    true = len(frame)
    piece = draw(st.sampled_from(("valid", "message_size", "message_type", "chunk_type", "truncated")))
    what = piece
    if piece == "message_size":
        size = draw(edge_or_any((*SIZE_EDGES_ABSOLUTE, true - 1, true + 1), 0, U32))
        # Half the time the body is cut too (the bytes sent then disagree with both); shrinks to none.
        body = draw(st.one_of(st.integers(0, true - HEADER_SIZE), st.just(true - HEADER_SIZE)))
        frame = _with_size(frame, size)[: HEADER_SIZE + body]
        what = f"message_size={size},body={body}"
    elif piece == "message_type":
        kind = draw(st.sampled_from(UNKNOWN_TYPES) | st.binary(min_size=3, max_size=3))
        frame, what = kind + frame[3:], f"message_type={kind!r}"
    elif piece == "chunk_type":
        ctype = draw(st.sampled_from(CHUNK_TYPE_EDGES))
        frame, what = frame[:3] + ctype + frame[4:], f"chunk_type={ctype!r}"
    elif piece == "truncated":
        frame = frame[: draw(st.integers(1, true - 1))]
    return Frame(frame, f"hel.{what}")


@st.composite
def hello_frames(draw: st.DrawFn, endpoint_url: str) -> Frame:
    """A consistent HEL chunk with one field at its edge."""
    piece = draw(
        st.sampled_from(
            (
                "valid",
                "receive_buffer_size",
                "send_buffer_size",
                "max_message_size",
                "max_chunk_count",
                "protocol_version",
                "endpoint_url",
            )
        )
    )
    hello = Hello(endpoint_url)
    what = piece
    if piece in ("receive_buffer_size", "send_buffer_size", "max_message_size", "max_chunk_count"):
        value = draw(edge_or_any(BUFFER_EDGES, 0, U32))
        hello = Hello(endpoint_url, **{piece: value})
        what = f"{piece}={value}"
    elif piece == "protocol_version":
        value = draw(edge_or_any(VERSION_EDGES, 1, U32))
        hello, what = Hello(endpoint_url, protocol_version=value), f"protocol_version={value}"
    elif piece == "endpoint_url":
        length = draw(st.sampled_from(URL_LENGTH_EDGES))
        hello, what = Hello("opc.tcp://" + "a" * max(0, length - 10)), f"endpoint_url_length={length}"
    return Frame(hello.encode(), f"hel.{what}")


@st.composite
def secure_channel_frames(draw: st.DrawFn, endpoint_url: str) -> Frame:
    """HEL then an OPN (None) with one piece at its edge, or MSG/CLO/intermediate chunks out of order."""
    hello = Hello(endpoint_url).encode()
    piece = draw(
        st.sampled_from(
            (
                "valid",
                "opn.message_size",
                "opn.channel_id",
                "opn.sequence_number",
                "msg_before_opn",
                "clo_before_opn",
                "chunk_count",
            )
        )
    )
    what = piece
    if piece == "opn.message_size":
        opn = open_secure_channel()
        size = draw(edge_or_any((0, 7, 8, len(opn) - 1, len(opn) + 1, U32), 0, U32))
        tail, what = open_secure_channel(size=size), f"opn.message_size={size}"
    elif piece == "opn.channel_id":
        channel = draw(edge_or_any((1, U32, 0x7FFFFFFF), 1, U32))
        tail, what = open_secure_channel(channel_id=channel), f"opn.channel_id={channel}"
    elif piece == "opn.sequence_number":
        number = draw(edge_or_any((0, U32, 0xFFFFFBFF, 1024), 0, U32))
        tail, what = open_secure_channel(sequence_number=number), f"opn.sequence_number={number}"
    elif piece in ("msg_before_opn", "clo_before_opn"):
        kind = b"MSG" if piece == "msg_before_opn" else b"CLO"
        payload = draw(st.binary(max_size=64))
        tail = symmetric_chunk(
            kind,
            payload,
            channel_id=draw(st.sampled_from((0, 1, U32))),
            token_id=1,
            sequence_number=1,
            request_id=1,
        )
    elif piece == "chunk_count":
        count = draw(st.sampled_from((2, 16, 256, 1024)))
        tail = b"".join(
            symmetric_chunk(
                b"MSG",
                b"\0" * 16,
                channel_id=1,
                token_id=1,
                sequence_number=i + 1,
                request_id=1,
                chunk_type=b"C",
            )
            for i in range(count)
        )
        what = f"intermediate_chunks={count}"
    else:
        tail = open_secure_channel()
    return Frame(hello + tail, what)


def chunk_header_bursts(endpoint_url: str) -> st.SearchStrategy[Burst]:
    return bursts(chunk_header_frames(endpoint_url), max_frames=2)


def hello_bursts(endpoint_url: str) -> st.SearchStrategy[Burst]:
    return bursts(hello_frames(endpoint_url), max_frames=2)


def secure_channel_bursts(endpoint_url: str) -> st.SearchStrategy[Burst]:
    return bursts(secure_channel_frames(endpoint_url), max_frames=1)


def declared_size(frame: bytes) -> int | None:
    """The MessageSize a frame claims, for reports."""
    return ChunkHeader.decode(frame).message_size if len(frame) >= HEADER_SIZE else None
