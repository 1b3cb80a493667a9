"""OPC UA binary (UA TCP, Part 6 7.1) chunk framing of our own: HEL/ACK/OPN/MSG/CLO/ERR.

kentei writes these bytes itself so that a fuzzer can put a wrong MessageSize, an unknown
message type, a chunk type other than F/C/A, or a HEL field at its limit on the wire; a
client library would correct or refuse them. Service bodies (OpenSecureChannelRequest)
come from asyncua's encoder: the framing around them is what is fuzzed.

Also the reading side every raw UA TCP client shares (protocols/opcua/uatcp.py): the one
StatusCode name table (asyncua's), ACK and ERR bodies, and an OPN response decoded into the
channel it opened or the refusal it carries (a ServiceFault included).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

HEADER_SIZE = 8  # MessageType (3) + ChunkType (1) + MessageSize (UInt32)
MESSAGE_TYPES = (b"HEL", b"ACK", b"OPN", b"MSG", b"CLO", b"ERR", b"RHE")
CHUNK_TYPES = (b"F", b"C", b"A")
PROTOCOL_VERSION = 0
MIN_BUFFER_SIZE = 8192  # Part 6 7.1.2.3: receive/send buffers at least 8192 bytes
DEFAULT_BUFFER_SIZE = 65535
NONE_POLICY_URI = "http://opcfoundation.org/UA/SecurityPolicy#None"
OPEN_RESPONSE_TYPE = 449  # OpenSecureChannelResponse_Encoding_DefaultBinary (Part 6 Annex A)
SERVICE_FAULT_TYPE = 397  # ServiceFault_Encoding_DefaultBinary
_INFO_BITS = 0x0000FFFF  # Part 4 7.39: the low 16 bits of a StatusCode are flags, not the code


class FrameError(ValueError):
    """Bytes that are not a well-formed UA TCP message."""


@functools.cache
def _status_names() -> dict[int, str]:
    # asyncua's own table of the Part 6 StatusCode CSV: the one source of status names in kentei.
    from asyncua.ua.status_codes import code_to_name_doc

    return {code: name for code, (name, _doc) in code_to_name_doc.items()}


def status_name(code: int) -> str:
    """The symbolic name of a StatusCode ("BadTcpMessageTypeInvalid"), or its hex when unknown."""
    names = _status_names()
    return names.get(code) or names.get(code & ~_INFO_BITS) or f"{code:#010x}"


def status_code(name: str) -> int:
    """The StatusCode of a symbolic name; KeyError for a name asyncua does not know."""
    from asyncua.ua.status_codes import StatusCodes

    code = getattr(StatusCodes, name, None)
    if not isinstance(code, int):
        raise KeyError(name)
    return code


@dataclass(frozen=True)
class ChunkHeader:
    message_type: bytes  # b"HEL", ...
    chunk_type: bytes  # b"F", b"C", b"A"
    message_size: int  # the whole chunk, header included, as the sender claims

    def encode(self) -> bytes:
        return (
            self.message_type[:3].ljust(3, b"\0")
            + self.chunk_type[:1].ljust(1, b"\0")
            + struct.pack("<I", self.message_size & 0xFFFFFFFF)
        )

    @classmethod
    def decode(cls, data: bytes) -> ChunkHeader:
        if len(data) < HEADER_SIZE:
            raise FrameError(f"chunk header needs {HEADER_SIZE} bytes, got {len(data)}")
        (size,) = struct.unpack("<I", data[4:8])
        return cls(bytes(data[:3]), bytes(data[3:4]), size)


def chunk(message_type: bytes, body: bytes, *, chunk_type: bytes = b"F", size: int | None = None) -> bytes:
    """A chunk around `body`; `size` writes a MessageSize that disagrees with it on purpose."""
    true_size = HEADER_SIZE + len(body)
    return ChunkHeader(message_type, chunk_type, true_size if size is None else size).encode() + body


def ua_string(text: str | bytes | None) -> bytes:
    """UA String/ByteString: Int32 length (-1 for null) and the bytes."""
    if text is None:
        return struct.pack("<i", -1)
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<i", len(raw)) + raw


@dataclass(frozen=True)
class Hello:
    endpoint_url: str
    protocol_version: int = PROTOCOL_VERSION
    receive_buffer_size: int = DEFAULT_BUFFER_SIZE
    send_buffer_size: int = DEFAULT_BUFFER_SIZE
    max_message_size: int = 0  # 0: no limit
    max_chunk_count: int = 0

    def body(self) -> bytes:
        fields = (
            self.protocol_version,
            self.receive_buffer_size,
            self.send_buffer_size,
            self.max_message_size,
            self.max_chunk_count,
        )
        return struct.pack("<5I", *(f & 0xFFFFFFFF for f in fields)) + ua_string(self.endpoint_url)

    def encode(self) -> bytes:
        return chunk(b"HEL", self.body())


@dataclass(frozen=True)
class Acknowledge:
    protocol_version: int
    receive_buffer_size: int
    send_buffer_size: int
    max_message_size: int
    max_chunk_count: int

    @classmethod
    def decode_body(cls, body: bytes) -> Acknowledge:
        if len(body) < 20:
            raise FrameError(f"ACK body needs 20 bytes, got {len(body)}")
        return cls(*struct.unpack("<5I", body[:20]))


@dataclass(frozen=True)
class ErrorMessage:
    status: int
    reason: str

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    def encode(self) -> bytes:
        """An ERR chunk (Part 6 7.1.2.5): StatusCode, then Reason as a UA String."""
        return chunk(b"ERR", struct.pack("<I", self.status & 0xFFFFFFFF) + ua_string(self.reason))

    @classmethod
    def decode_body(cls, body: bytes) -> ErrorMessage:
        if len(body) < 8:
            raise FrameError(f"ERR body needs 8 bytes, got {len(body)}")
        status, length = struct.unpack("<Ii", body[:8])
        reason = body[8 : 8 + length].decode(errors="replace") if length > 0 else ""
        return cls(status, reason)


def asymmetric_security_header(
    policy_uri: str = NONE_POLICY_URI, certificate: bytes | None = None, thumbprint: bytes | None = None
) -> bytes:
    return ua_string(policy_uri) + ua_string(certificate) + ua_string(thumbprint)


def sequence_header(sequence_number: int, request_id: int) -> bytes:
    return struct.pack("<II", sequence_number & 0xFFFFFFFF, request_id & 0xFFFFFFFF)


def open_secure_channel_body(request_lifetime_ms: int = 60_000) -> bytes:
    """An OpenSecureChannelRequest (Issue, mode None), its encoding NodeId first, by asyncua."""
    from asyncua import ua
    from asyncua.ua.object_ids import ObjectIds
    from asyncua.ua.ua_binary import struct_to_binary

    request = ua.OpenSecureChannelRequest()
    request.Parameters.RequestType = ua.SecurityTokenRequestType.Issue
    request.Parameters.SecurityMode = ua.MessageSecurityMode.None_
    request.Parameters.ClientNonce = b""
    request.Parameters.RequestedLifetime = request_lifetime_ms
    # asyncua's request structs start with their TypeId field: the encoding NodeId comes with them.
    assert request.TypeId == ua.FourByteNodeId(
        ua.Int32(ObjectIds.OpenSecureChannelRequest_Encoding_DefaultBinary)
    )
    return bytes(struct_to_binary(request))


def open_secure_channel(
    *, channel_id: int = 0, sequence_number: int = 1, request_id: int = 1, size: int | None = None
) -> bytes:
    """OPN with SecurityPolicy None (discovery only on a conformant server)."""
    body = (
        struct.pack("<I", channel_id)
        + asymmetric_security_header()
        + sequence_header(sequence_number, request_id)
        + open_secure_channel_body()
    )
    return chunk(b"OPN", body, size=size)


def symmetric_chunk(
    message_type: bytes,
    payload: bytes,
    *,
    channel_id: int,
    token_id: int,
    sequence_number: int,
    request_id: int,
    chunk_type: bytes = b"F",
    size: int | None = None,
) -> bytes:
    """MSG or CLO: channel id, token id, sequence header, then the (unsigned, unencrypted) payload."""
    body = struct.pack("<II", channel_id, token_id) + sequence_header(sequence_number, request_id) + payload
    return chunk(message_type, body, chunk_type=chunk_type, size=size)


def split_messages(data: bytes) -> tuple[list[tuple[ChunkHeader, bytes]], bytes]:
    """Whole chunks at the start of `data` (header, body), and the bytes left over."""
    messages: list[tuple[ChunkHeader, bytes]] = []
    while len(data) >= HEADER_SIZE:
        header = ChunkHeader.decode(data)
        if header.message_size < HEADER_SIZE:
            raise FrameError(f"MessageSize {header.message_size} smaller than the header")
        if len(data) < header.message_size:
            break
        messages.append((header, data[HEADER_SIZE : header.message_size]))
        data = data[header.message_size :]
    return messages, data


@dataclass(frozen=True)
class ChannelOpened:
    """The SecurityToken of an OpenSecureChannelResponse: what the symmetric chunks must carry."""

    channel_id: int
    token_id: int
    revised_lifetime_ms: int


@dataclass(frozen=True)
class OpenRefused:
    """An OPN response that refuses: a ServiceFault (Part 6 6.7.6 allows one in an OPN message,
    instead of an ERR) or an OpenSecureChannelResponse whose ServiceResult is not Good."""

    status: int
    service_fault: bool

    @property
    def status_name(self) -> str:
        return status_name(self.status)


def decode_open_response(body: bytes) -> ChannelOpened | OpenRefused:
    """The body of an OPN message (after its 8-byte header) sent with SecurityPolicy None.

    SecureChannelId, the asymmetric security header, the sequence header, then the encoding
    NodeId that says which of the two responses follows. FrameError for anything else.
    """
    from asyncua import ua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

    try:
        buffer = Buffer(body[4:])
        struct_from_binary(ua.AsymmetricAlgorithmHeader, buffer)
        struct_from_binary(ua.SequenceHeader, buffer)
        type_id = nodeid_from_binary(buffer.copy())  # the response struct reads its TypeId itself
        if type_id.NamespaceIndex != 0 or type_id.Identifier not in (OPEN_RESPONSE_TYPE, SERVICE_FAULT_TYPE):
            raise FrameError(f"OPN response of type {type_id.to_string()}, not OpenSecureChannelResponse")
        if type_id.Identifier == SERVICE_FAULT_TYPE:
            fault = struct_from_binary(ua.ServiceFault, buffer)
            return OpenRefused(int(fault.ResponseHeader.ServiceResult.value), service_fault=True)
        response = struct_from_binary(ua.OpenSecureChannelResponse, buffer)
    except FrameError:
        raise
    except Exception as exc:  # asyncua's decoder raises what it meets (NotEnoughData, struct.error, ...)
        raise FrameError(f"OPN response body not decodable: {type(exc).__name__}: {exc}") from None
    result = int(response.ResponseHeader.ServiceResult.value)
    if result & 0xC0000000:  # Bad or Uncertain: no channel was opened
        return OpenRefused(result, service_fault=False)
    token = response.Parameters.SecurityToken
    return ChannelOpened(int(token.ChannelId), int(token.TokenId), int(token.RevisedLifetime))
