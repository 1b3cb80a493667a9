"""A UA TCP server that refuses every OpenSecureChannel with a ServiceFault in the OPN response.

OPC UA Part 6 6.7.4 lets a server answer a refused OpenSecureChannel this way once it has
verified the request's security, instead of sending an ERR. The bytes are asyncua's own: its
server-side SecureConnection verifies (and decrypts) the request with the PKI's `server`
certificate and signs (and encrypts) the fault for the client, as a real stack would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from asyncua import ua
from asyncua.common.connection import SecureConnection, TransportLimits
from asyncua.common.utils import Buffer
from asyncua.crypto import security_policies as sp
from asyncua.ua.ua_binary import header_from_binary, struct_from_binary, struct_to_binary, uatcp_to_binary
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.pki import TestPki

MAX_CONNECTIONS = 32  # the server stops answering after this many: every test loop is bounded


def _policies(pki: TestPki) -> list[sp.SecurityPolicyFactory]:
    cert = x509.load_der_x509_certificate(pki.entry("server").cert_der.read_bytes())
    key = serialization.load_pem_private_key(pki.entry("server").key_pem.read_bytes(), password=None)
    factories = [sp.SecurityPolicyFactory(sp.SecurityPolicyNone, ua.MessageSecurityMode.None_)]  # type: ignore[no-untyped-call]
    for mode in (ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt):
        factories.append(sp.SecurityPolicyFactory(sp.SecurityPolicyBasic256Sha256, mode, cert, key))  # type: ignore[no-untyped-call]
    return factories


async def _read_message(reader: asyncio.StreamReader) -> tuple[Any, Buffer]:
    head = await reader.readexactly(8)
    size = int.from_bytes(head[4:8], "little")
    buf = Buffer(head + await reader.readexactly(size - 8))
    return header_from_binary(buf), buf


async def _serve_one(
    pki: TestPki, statuses: dict[str, str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    connection = SecureConnection(sp.SecurityPolicyNone(), TransportLimits(65535, 65535, 0, 0))  # type: ignore[no-untyped-call]
    connection.set_policy_factories(_policies(pki))
    try:
        header, _ = await _read_message(reader)
        if header.MessageType != ua.MessageType.Hello:
            return
        ack = ua.Acknowledge()
        ack.ReceiveBufferSize = ack.SendBufferSize = 65535
        writer.write(uatcp_to_binary(ua.MessageType.Acknowledge, ack))  # type: ignore[arg-type]
        header, body = await _read_message(reader)
        message = connection.receive_from_header_and_body(header, body)
        request = struct_from_binary(ua.OpenSecureChannelRequest, message.body())
        fault = ua.ServiceFault()
        fault.ResponseHeader.RequestHandle = request.RequestHeader.RequestHandle
        policy = connection.security_policy.URI
        fault.ResponseHeader.ServiceResult = ua.StatusCode(getattr(ua.StatusCodes, statuses[policy]))
        writer.write(
            connection.message_to_binary(
                struct_to_binary(fault),
                message_type=ua.MessageType.SecureOpen,
                request_id=message.request_id(),
            )
        )
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1), 2.0)  # the client closes
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def opn_fault_server(pki: TestPki, *, none: str, secure: str) -> AsyncIterator[str]:
    """Yields an opc.tcp URL on 127.0.0.1 whose OPN over None is refused with the ServiceFault status
    `none`, and over Basic256Sha256 with `secure`."""
    statuses = {sp.SecurityPolicyNone.URI: none, sp.SecurityPolicyBasic256Sha256.URI: secure}
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        if served > MAX_CONNECTIONS:
            writer.close()
            return
        await _serve_one(pki, statuses, reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"opc.tcp://127.0.0.1:{port}/fault"
    finally:
        server.close()
        await server.wait_closed()
