"""UA TCP field tables for the systematic anomalies (protocols/anomalies.py): chunk headers, HEL, OPN.

Three lists, one per framing area (Part 6 7.1.2):
- `chunk_anomalies`: the 8-byte header (MessageType, ChunkType, MessageSize against the bytes sent)
  of a HEL, an ACK, an OPN (behind a valid HEL), a MSG and a CLO (each sent where no channel is open:
  a server must refuse them), and each chunk cut at every header and body field boundary;
- `hello_anomalies`: each HEL field (ProtocolVersion, the buffer sizes below 8192 and at their edges,
  MaxMessageSize, MaxChunkCount, the EndpointUrl's length against its bytes and past 4096 bytes), the
  MessageSize kept right;
- `channel_anomalies`: behind a valid HEL, each OPN field (SecureChannelId, the lengths of the
  SecurityPolicyUri, SenderCertificate and ReceiverCertificateThumbprint, SequenceNumber at its wrap
  limit, RequestId), the MessageSize kept right, and the OPN cut at each of them.
"""

from __future__ import annotations

import struct

from protocols.anomalies import Anomaly, Extra, Field, Layout, anomalies, unique
from protocols.opcua.frames import (
    HEADER_SIZE,
    MESSAGE_TYPES,
    MIN_BUFFER_SIZE,
    Hello,
    chunk,
    open_secure_channel,
    symmetric_chunk,
)

MAX_URL = 4096  # Part 6 7.1.2.3: EndpointUrl at most 4096 bytes
SEQUENCE_WRAP = 0xFFFFFFFF - 1024  # Part 6 6.7.2.4: sequence numbers wrap below UInt32.Max - 1024


def fix_message_size(frame: bytes) -> bytes:
    if len(frame) < HEADER_SIZE:
        return frame
    return frame[:4] + struct.pack("<I", len(frame)) + frame[8:]


def _header_fields(message_type: bytes) -> tuple[Field, ...]:
    others = tuple(t for t in MESSAGE_TYPES if t != message_type)
    return (
        Field("message_type", 0, 3, tags=(*others, b"XYZ")),
        Field("chunk_type", 3, 1, tags=(b"C", b"A", b"X")),
        Field(
            "message_size", 4, 4, "little", low=HEADER_SIZE, limits=(("min-buffer", MIN_BUFFER_SIZE),),
            relative=True,
        ),
    )  # fmt: skip


def _hello_fields() -> tuple[Field, ...]:
    def u32(name: str, offset: int, low: int = 0, high: int | None = None) -> Field:
        return Field(name, offset, 4, "little", low=low, high=high)

    return (
        u32("protocol_version", 8, high=0),
        u32("receive_buffer_size", 12, low=MIN_BUFFER_SIZE),
        u32("send_buffer_size", 16, low=MIN_BUFFER_SIZE),
        u32("max_message_size", 20),
        u32("max_chunk_count", 24),
        Field("endpoint_url_length", 28, 4, "little", high=MAX_URL, relative=True),
    )


def _opn_fields(opn: bytes) -> tuple[Field, ...]:
    """SecureChannelId, then the asymmetric security header's three strings and the sequence header."""
    at = HEADER_SIZE + 4
    policy = Field("policy_uri_length", at, 4, "little", relative=True)
    at = policy.end + int.from_bytes(opn[policy.offset : policy.end], "little", signed=True)
    certificate = Field("sender_certificate_length", at, 4, "little", relative=True)
    at = certificate.end + max(0, int.from_bytes(opn[at : at + 4], "little", signed=True))
    thumbprint = Field("thumbprint_length", at, 4, "little", relative=True)
    at = thumbprint.end + max(0, int.from_bytes(opn[at : at + 4], "little", signed=True))
    return (
        Field("secure_channel_id", HEADER_SIZE, 4, "little"),
        policy,
        certificate,
        thumbprint,
        Field("sequence_number", at, 4, "little", limits=(("wrap", SEQUENCE_WRAP),)),
        Field("request_id", at + 4, 4, "little"),
    )


# The OpenSecureChannelRequest's encoding NodeId and an empty AuthenticationToken: its Timestamp follows.
_OPN_REQUEST_HEAD = b"\x01\x00\xbe\x01\x00\x00"


def _opn() -> bytes:
    """An OPN (None) whose RequestHeader Timestamp is null: the same bytes on every run (not now)."""
    opn = open_secure_channel()
    at = opn.index(_OPN_REQUEST_HEAD) + len(_OPN_REQUEST_HEAD)
    return opn[:at] + bytes(8) + opn[at + 8 :]


def _symmetric(kind: bytes) -> bytes:
    return symmetric_chunk(kind, b"\0" * 16, channel_id=1, token_id=1, sequence_number=1, request_id=1)


def _acknowledge() -> bytes:
    return chunk(b"ACK", struct.pack("<5I", 0, 65535, 65535, 0, 0))


def chunk_layouts(endpoint_url: str) -> tuple[Layout, ...]:
    hello = Hello(endpoint_url).encode()
    frames: list[tuple[str, bytes, bytes, tuple[Field, ...]]] = [
        ("hel", b"", hello, _hello_fields()),
        ("ack", b"", _acknowledge(), ()),
        ("opn", hello, _opn(), _opn_fields(_opn())),
        ("msg", b"", _symmetric(b"MSG"), ()),
        ("clo", b"", _symmetric(b"CLO"), ()),
    ]
    layouts = []
    for name, prefix, frame, body_fields in frames:
        header = _header_fields(frame[:3])
        cuts = tuple(Field(f"body.{f.name}", f.offset, f.size) for f in body_fields)
        layouts.append(Layout(name, frame, header, prefix=prefix, truncate=False))
        # Truncations: the header as sent, the chunk cut at each header and body field.
        layouts.append(_cuts(Layout(name, frame, (*header, *cuts), prefix=prefix)))
    return tuple(layouts)


def _cuts(layout: Layout) -> Layout:
    size = len(layout.frame)
    return Layout(
        layout.name,
        layout.frame,
        layout.fields,
        prefix=layout.prefix,
        allowed=lambda frame: len(frame) < size,
    )


def hello_layouts(endpoint_url: str) -> tuple[Layout, ...]:
    hello = Hello(endpoint_url).encode()
    scheme = "opc.tcp://"
    extras = tuple(
        Extra("endpoint_url", "size", Hello(scheme + "a" * (size - len(scheme))).encode(), f"size={size}")
        for size in (MAX_URL, MAX_URL + 1)
    )
    return (Layout("hel", hello, _hello_fields(), fix=fix_message_size, truncate=False, extras=extras),)


def channel_layouts(endpoint_url: str) -> tuple[Layout, ...]:
    hello = Hello(endpoint_url).encode()
    opn = _opn()
    return (Layout("opn", opn, _opn_fields(opn), prefix=hello, fix=fix_message_size),)


def chunk_anomalies(endpoint_url: str) -> tuple[Anomaly, ...]:
    return unique(anomalies(chunk_layouts(endpoint_url)))


def hello_anomalies(endpoint_url: str) -> tuple[Anomaly, ...]:
    return unique(anomalies(hello_layouts(endpoint_url)))


def channel_anomalies(endpoint_url: str) -> tuple[Anomaly, ...]:
    return unique(anomalies(channel_layouts(endpoint_url)))
