"""UA TCP answers a server sends, built by asyncua's own encoder (never by kentei's decoder)."""

from __future__ import annotations

from asyncua import ua
from asyncua.common.connection import MessageChunk
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_to_binary, uatcp_to_binary


def _opn(response: ua.OpenSecureChannelResponse | ua.ServiceFault) -> bytes:
    """An OPN message around `response`, framed by asyncua (SecurityPolicy None)."""
    [chunk] = MessageChunk.message_to_chunks(
        SecurityPolicyNone(), struct_to_binary(response), 65535, ua.MessageType.SecureOpen, channel_id=5
    )
    chunk.SequenceHeader.SequenceNumber = 1
    return bytes(chunk.to_binary())


def service_fault(status: str) -> bytes:
    fault = ua.ServiceFault()
    fault.ResponseHeader.ServiceResult = ua.StatusCode(getattr(StatusCodes, status))
    return _opn(fault)


def open_response(channel_id: int = 5, token_id: int = 3, result: str = "Good") -> bytes:
    response = ua.OpenSecureChannelResponse()
    response.ResponseHeader.ServiceResult = ua.StatusCode(getattr(StatusCodes, result))
    response.Parameters.SecurityToken.ChannelId = channel_id
    response.Parameters.SecurityToken.TokenId = token_id
    response.Parameters.SecurityToken.RevisedLifetime = 60_000
    return _opn(response)


def ack(max_chunk_count: int = 16) -> bytes:
    acknowledge = ua.Acknowledge()
    acknowledge.MaxChunkCount = max_chunk_count
    return bytes(uatcp_to_binary(ua.MessageType.Acknowledge, acknowledge))


def err(status: str, reason: str = "no") -> bytes:
    error = ua.ErrorMessage(ua.StatusCode(getattr(StatusCodes, status)), reason)
    return bytes(uatcp_to_binary(ua.MessageType.Error, error))
