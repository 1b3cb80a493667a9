"""kentei's own MSG chunks (protocols/opcua/signed_messages.py) against asyncua's, without a network.

The chunk kentei signs must be exactly the chunk asyncua's MessageChunk builds from the same keys and
fields (so that a refusal of a tampered one is about the one field kentei spoiled), and a server-side
SecureConnection with the peer's keys must take it; the spoiled signature must not verify there.
The end-to-end proof is the defect matrix (tests/test_defect_matrix.py, simulators/opcua/message_security.py).
"""

from __future__ import annotations

import pytest
from asyncua import ua
from asyncua.common.connection import MessageChunk, SecureConnection, TransportLimits
from asyncua.common.utils import Buffer
from asyncua.crypto import security_policies as sp
from asyncua.crypto import uacrypto
from asyncua.ua.ua_binary import header_from_binary
from cryptography import x509

from protocols.opcua.security import BASIC256SHA256, ClientIdentity, make_policy
from protocols.opcua.signed_messages import sign_chunk
from protocols.pki import TestPki
from protocols.private_keys import load_lab_key

CLIENT_NONCE = bytes(range(32))
SERVER_NONCE = bytes(range(32, 64))
BODY = b"kentei: a request body " * 7


def _pair(pki: TestPki, mode: str) -> tuple[sp.SecurityPolicy, sp.SecurityPolicy]:
    """A client policy and the server's peer policy, with the symmetric keys of the same two nonces."""
    client_entry, server_entry = pki.entry("client"), pki.entry("server")
    identity = ClientIdentity.from_files(client_entry.cert_pem, client_entry.key_pem)
    server_der = server_entry.cert_der.read_bytes()
    client = make_policy(BASIC256SHA256, mode, identity, server_der)
    server: sp.SecurityPolicy = sp.SecurityPolicyBasic256Sha256(  # type: ignore[no-untyped-call]
        x509.load_der_x509_certificate(identity.certificate_der),
        x509.load_der_x509_certificate(server_der),
        load_lab_key(server_entry.key_pem.read_bytes()),
        ua.MessageSecurityMode.Sign if mode == "Sign" else ua.MessageSecurityMode.SignAndEncrypt,
    )
    client.make_local_symmetric_key(SERVER_NONCE, CLIENT_NONCE)  # type: ignore[no-untyped-call]
    client.make_remote_symmetric_key(CLIENT_NONCE, SERVER_NONCE, 600_000)  # type: ignore[no-untyped-call]
    server.make_local_symmetric_key(CLIENT_NONCE, SERVER_NONCE)  # type: ignore[no-untyped-call]
    server.make_remote_symmetric_key(SERVER_NONCE, CLIENT_NONCE, 600_000)  # type: ignore[no-untyped-call]
    return client, server


def _asyncua_chunk(policy: sp.SecurityPolicy) -> bytes:
    chunk = MessageChunk(
        policy.symmetric_cryptography, BODY, ua.MessageType.SecureMessage, ua.ChunkType.Single
    )  # type: ignore[arg-type]
    assert isinstance(chunk.SecurityHeader, ua.SymmetricAlgorithmHeader)
    chunk.SecurityHeader.TokenId = 13
    chunk.MessageHeader.ChannelId = 7
    chunk.SequenceHeader.SequenceNumber = 42
    chunk.SequenceHeader.RequestId = 5
    return chunk.to_binary()


def _received(server: sp.SecurityPolicy, data: bytes) -> bytes:
    buffer = Buffer(data)
    header = header_from_binary(buffer)
    received = MessageChunk.from_header_and_body(server, header, buffer)
    assert received.SequenceHeader.SequenceNumber == 42
    return bytes(received.Body)


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_kentei_signs_the_chunk_asyncua_would(session_pki: TestPki, mode: str) -> None:
    client, server = _pair(session_pki, mode)
    ours = sign_chunk(client, b"MSG", BODY, channel_id=7, token_id=13, sequence_number=42, request_id=5)
    assert ours == _asyncua_chunk(client)
    assert _received(server, ours) == BODY
    if mode == "Sign":
        assert BODY in ours  # signed, not encrypted
    else:
        assert BODY not in ours


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
def test_a_flipped_signature_does_not_verify(session_pki: TestPki, mode: str) -> None:
    client, server = _pair(session_pki, mode)
    fields = {"channel_id": 7, "token_id": 13, "sequence_number": 42, "request_id": 5}
    good = sign_chunk(client, b"MSG", BODY, **fields)
    spoiled = sign_chunk(client, b"MSG", BODY, flip_signature=True, **fields)
    assert len(spoiled) == len(good) and spoiled != good
    with pytest.raises(uacrypto.InvalidSignature):  # type: ignore[attr-defined]
        _received(server, spoiled)


def test_the_connection_of_the_server_takes_kentei_chunks(session_pki: TestPki) -> None:
    """Through asyncua's SecureConnection, as the simulator reads them (token, channel, sequence)."""
    client, server = _pair(session_pki, "SignAndEncrypt")
    connection = SecureConnection(server, TransportLimits())
    connection.security_token.ChannelId, connection.security_token.TokenId = 7, 13
    data = Buffer(
        sign_chunk(client, b"MSG", BODY, channel_id=7, token_id=13, sequence_number=42, request_id=5)
    )
    message = connection.receive_from_header_and_body(header_from_binary(data), data)
    assert isinstance(message, ua.Message)
    assert bytes(message.body().read(len(BODY))) == BODY  # type: ignore[no-untyped-call]
