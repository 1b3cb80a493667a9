"""UA TCP frames a hostile OPC UA device reads and sends, built by asyncua's encoder (not kentei's)."""

from __future__ import annotations

import asyncio
import struct

from asyncua import ua
from asyncua.common.connection import MessageChunk
from asyncua.common.utils import Buffer
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary, struct_to_binary, uatcp_to_binary

MAX_MESSAGE = 1 << 20  # what this device reads of one message; more is a client bug, not ours
NONE_POLICY = "http://opcfoundation.org/UA/SecurityPolicy#None"
BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
CHANNEL_ID, TOKEN_ID = 7, 1

# Part 6 7.1.5 (UA TCP error codes) and the refusals a server sends at HEL or OPN: one per kind.
ERR_KINDS = (
    "BadTcpServerTooBusy",
    "BadTcpMessageTypeInvalid",
    "BadTcpSecureChannelUnknown",
    "BadTcpMessageTooLarge",
    "BadTcpNotEnoughResources",
    "BadTcpInternalError",
    "BadTcpEndpointUrlInvalid",
    "BadTimeout",
    "BadRequestInterrupted",
    "BadRequestTimeout",
    "BadSecureChannelClosed",
    "BadSecureChannelTokenUnknown",
    "BadSecurityChecksFailed",
    "BadSecurityPolicyRejected",
    "BadCertificateInvalid",
    "BadCertificateUntrusted",
    "BadCertificateTimeInvalid",
    "BadCertificateRevoked",
    "BadNonceInvalid",
    "BadProtocolVersionUnsupported",
)


def status(name: str) -> ua.StatusCode:
    return ua.StatusCode(getattr(StatusCodes, name))


def err(name: str, reason: str = "refused") -> bytes:
    return bytes(uatcp_to_binary(ua.MessageType.Error, ua.ErrorMessage(status(name), reason)))


def ack(buffer_size: int = 65535, max_message: int = 0, max_chunks: int = 0) -> bytes:
    acknowledge = ua.Acknowledge()
    acknowledge.ReceiveBufferSize = buffer_size
    acknowledge.SendBufferSize = buffer_size
    acknowledge.MaxMessageSize = max_message
    acknowledge.MaxChunkCount = max_chunks
    return bytes(uatcp_to_binary(ua.MessageType.Acknowledge, acknowledge))


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(message type, the bytes after the 8-byte header) of the next message."""
    header = await reader.readexactly(8)
    size = struct.unpack("<I", header[4:8])[0]
    if not 8 <= size <= MAX_MESSAGE:
        raise asyncio.IncompleteReadError(header, None)  # not a message this device will read
    return header[:3], await reader.readexactly(size - 8)


def hello_url(body: bytes) -> str:
    """The EndpointUrl of a HEL body (after 5 UInt32 fields)."""
    (length,) = struct.unpack("<i", body[20:24])
    return body[24 : 24 + max(length, 0)].decode(errors="replace")


def opn_policy(body: bytes) -> tuple[str, int]:
    """(SecurityPolicyUri, RequestId) of an OPN body; the request id is only right for None."""
    buf = Buffer(body[4:])  # after the SecureChannelId
    policy = ua.ua_binary.Primitives.String.unpack(buf) or ""
    ua.ua_binary.Primitives.ByteString.unpack(buf)  # sender certificate
    ua.ua_binary.Primitives.ByteString.unpack(buf)  # receiver thumbprint
    _sequence, request_id = struct.unpack("<II", buf.read(8))
    return policy, request_id


def msg_request(body: bytes) -> tuple[int, int, ua.RequestHeader, Buffer]:
    """(type id, request id, request header, the rest) of a MSG body over a None channel."""
    buf = Buffer(body[8:])  # after SecureChannelId and TokenId
    _sequence, request_id = struct.unpack("<II", buf.read(8))
    type_id = nodeid_from_binary(buf)
    header = struct_from_binary(ua.RequestHeader, buf)
    return int(type_id.Identifier), request_id, header, buf


def _chunks(response: object, message_type: bytes, request_id: int) -> bytes:
    [chunk] = MessageChunk.message_to_chunks(
        SecurityPolicyNone(),
        struct_to_binary(response),
        65535,
        message_type,  # type: ignore[arg-type]
        channel_id=CHANNEL_ID,
        request_id=request_id,
        token_id=TOKEN_ID,
    )
    chunk.SequenceHeader.SequenceNumber = request_id  # one answer per request: good enough
    return bytes(chunk.to_binary())


def open_response(request_id: int) -> bytes:
    response = ua.OpenSecureChannelResponse()
    response.Parameters.SecurityToken.ChannelId = CHANNEL_ID
    response.Parameters.SecurityToken.TokenId = TOKEN_ID
    response.Parameters.SecurityToken.RevisedLifetime = 600_000
    response.Parameters.ServerNonce = b""
    return _chunks(response, ua.MessageType.SecureOpen, request_id)


def response_message(response: object, request_id: int, handle: int, result: str = "Good") -> bytes:
    response.ResponseHeader.RequestHandle = handle  # type: ignore[attr-defined]
    response.ResponseHeader.ServiceResult = status(result)  # type: ignore[attr-defined]
    return _chunks(response, ua.MessageType.SecureMessage, request_id)


def service_fault(name: str, request_id: int, handle: int) -> bytes:
    return response_message(ua.ServiceFault(), request_id, handle, name)
