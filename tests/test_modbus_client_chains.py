"""kentei's TLS client sends a leaf's issuers when it is told to (the Modbus chain cases of TS-4).

The judge is a plain Python ssl server that trusts only the root `ca` and holds no CRL: a leaf of
the intermediate `no-crl-ca` verifies there only if the client sent `no-crl-ca` after it. So a
chain that silently went missing would show here, not only as a refusal for the wrong reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

from protocols.pki import TestPki
from protocols.tls.contexts import ClientIdentity, client_context

LEAF = "client-issuer-crl-missing"  # issued by no-crl-ca, itself issued by ca


@contextlib.asynccontextmanager
async def root_only_server(pki: TestPki) -> AsyncIterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.entry("server").cert_pem, pki.entry("server").key_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.entry("ca").cert_pem)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def served(port: int, identity: ClientIdentity) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client_context(identity)), 5
        )
    except (OSError, ssl.SSLError):
        return False
    try:
        return await asyncio.wait_for(reader.read(2), 5) == b"ok"
    except (OSError, ssl.SSLError):
        return False
    finally:
        writer.close()


async def test_the_issuers_go_after_the_leaf(session_pki: TestPki) -> None:
    entry = session_pki.entry(LEAF)
    alone = ClientIdentity(LEAF, entry.cert_pem, entry.key_pem)
    chained = ClientIdentity(
        LEAF, entry.cert_pem, entry.key_pem, issuers=(session_pki.entry("no-crl-ca").cert_der.read_bytes(),)
    )
    async with root_only_server(session_pki) as port:
        assert not await served(port, alone), "the server completed a chain it was never given"
        assert await served(port, chained), "the intermediate was not sent after the leaf"
